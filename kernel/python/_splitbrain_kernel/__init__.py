"""The Python half of splitbrain-kernel itself, called by its C++: the output streams, the IPython
shell's start-up and the shutdown's thread grace.

Not the splitbrain IPython extension (that is ``splitbrain_kernel``, which the kernel runs without
when it is missing or broken): nothing here imports IPython's extension or the splitbrain package,
and nothing here is imported before the kernel has sent its first kernel_info_reply.
"""
