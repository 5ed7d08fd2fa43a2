"""At start the kernel loads the splitbrain IPython extension (`splitbrain_kernel`) when it is
importable; an error in it is reported on the kernel's stderr and the kernel works without it."""
import os
import textwrap

from conftest import assert_clean_stderr, printed


def environment_with_extension(tmp_path, source):
    package = tmp_path / "ext" / "splitbrain_kernel"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(source))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(tmp_path / "ext"), env.get("PYTHONPATH")]))
    return env


def test_the_extension_registers_its_magics_at_start(start_kernel, tmp_path):
    env = environment_with_extension(tmp_path, """
        def load_ipython_extension(shell):
            def shout(line, cell):
                print(cell.upper(), end="")
            shell.register_magic_function(shout, magic_kind="cell")
    """)
    kernel = start_kernel(env=env)
    reply, outputs = kernel.execute("%%shout\nsplit brain\n")
    assert reply["status"] == "ok"
    assert printed(outputs) == [("stdout", "SPLIT BRAIN\n")]
    _, outputs = kernel.execute("print('splitbrain_kernel' in get_ipython().extension_manager.loaded)")
    assert printed(outputs) == [("stdout", "True\n")]
    assert kernel.shutdown() == 0
    assert kernel.stderr() == ""


def test_a_failing_extension_is_reported_on_stderr_and_the_kernel_works(start_kernel, tmp_path):
    env = environment_with_extension(tmp_path, """
        import a_module_that_does_not_exist

        def load_ipython_extension(shell):
            pass
    """)
    kernel = start_kernel(env=env)
    reply, outputs = kernel.execute("print(1 + 1)")
    assert printed(outputs) == [("stdout", "2\n")]
    assert kernel.shutdown() == 0
    stderr = kernel.stderr()
    assert "[splitbrain.kernel_extension_failed]" in stderr
    assert "No module named 'a_module_that_does_not_exist'" in stderr
    assert_clean_stderr(stderr)
