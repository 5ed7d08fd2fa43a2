"""jupyter_kernel_test's protocol conformance suite, every sample filled in."""
import unittest

import jupyter_kernel_test as jkt


class SplitbrainKernelConformance(jkt.KernelTests):
    kernel_name = "splitbrain"

    language_name = "python"
    file_extension = ".py"

    code_hello_world = "print('hello, world')"
    code_stderr = "import sys; print('test', file=sys.stderr)"

    completion_samples = [
        {"text": "zi", "matches": {"zip"}},
        # Jedi (IPython's default, on outside a slave's context) completes the attribute alone,
        # from cursor_start at "isdig", as ipykernel does.
        {"text": "str.isdig", "matches": {"isdigit"}},
        {"text": "import collec", "matches": {"collections"}},
    ]
    complete_code_samples = ["1", "print('hello, world')", "def f(x):\n  return x*2\n\n\n"]
    incomplete_code_samples = ["print('''hello", "def f(x):\n  x*2"]
    invalid_code_samples = ["import = 7q"]

    code_page_something = "print?"
    code_generate_error = "raise ValueError('wrong')"

    code_execute_result = [
        {"code": "1+2+3", "result": "6"},
        {"code": "[n*n for n in range(1, 4)]", "result": "[1, 4, 9]"},
    ]
    code_display_data = [
        {"code": "from IPython.display import HTML, display; display(HTML('<b>test</b>'))",
         "mime": "text/html"},
        {"code": "from IPython.display import Math, display; display(Math('\\\\frac{1}{2}'))",
         "mime": "text/latex"},
    ]

    code_history_pattern = "1?2*"
    supported_history_operations = ("tail", "range", "search")

    code_inspect_sample = "zip"
    code_clear_output = "from IPython.display import clear_output; clear_output()"

    def test_error_names_the_exception_type(self):
        self.flush_channels()
        reply, output_msgs = self.execute_helper(code=self.code_generate_error)
        self.assertEqual(reply["content"]["status"], "error")
        self.assertEqual(reply["content"]["ename"], "ValueError")
        self.assertEqual(reply["content"]["evalue"], "wrong")
        self.assertEqual(output_msgs[0]["msg_type"], "error")
        self.assertEqual(output_msgs[0]["content"]["ename"], "ValueError")

    def test_kernel_info_names_splitbrain_and_python_3_11(self):
        self.flush_channels()
        msg_id = self.kc.kernel_info()
        reply = self.kc.get_shell_msg(timeout=jkt.TIMEOUT)
        self.assertEqual(reply["parent_header"]["msg_id"], msg_id)
        content = reply["content"]
        self.assertEqual(content["implementation"], "splitbrain")
        self.assertTrue(content["language_info"]["version"].startswith("3.11"))
        self.assertEqual(content["language_info"]["pygments_lexer"], "ipython3")
        self.assertFalse(content["debugger"])


if __name__ == "__main__":
    unittest.main()
