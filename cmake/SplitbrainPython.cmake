# splitbrain_python_package(TARGET PACKAGE SOURCE_DIR): the pure-Python files SOURCE_DIR/*.py are
# copied into ${SPLITBRAIN_PYTHON_DIR}/PACKAGE at build time (tests import the build tree through
# PYTHONPATH=${SPLITBRAIN_PYTHON_DIR}) and installed into ${SPLITBRAIN_SITE_PACKAGES}/PACKAGE.
function(splitbrain_python_package target package source_dir)
  file(GLOB sources CONFIGURE_DEPENDS ${source_dir}/*.py)
  set(outputs "")
  foreach(source ${sources})
    get_filename_component(file_name ${source} NAME)
    set(output ${SPLITBRAIN_PYTHON_DIR}/${package}/${file_name})
    add_custom_command(OUTPUT ${output}
      COMMAND ${CMAKE_COMMAND} -E copy_if_different ${source} ${output}
      DEPENDS ${source}
      COMMENT "${package}/${file_name}")
    list(APPEND outputs ${output})
  endforeach()
  add_custom_target(${target} ALL DEPENDS ${outputs})
  install(FILES ${sources} DESTINATION ${SPLITBRAIN_SITE_PACKAGES}/${package})
endfunction()
