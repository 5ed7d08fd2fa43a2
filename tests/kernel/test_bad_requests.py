"""Every request gets a reply, an error reply for bad input; nothing a client sends stops the
kernel (xeus's core drops such requests silently and the client waits forever)."""
import json

import pytest

from conftest import printed

BAD_REQUESTS = {
    "code is not a string": ("execute_request", {"code": 5},
                             "execute_request: 'code' must be a string, not number"),
    "cursor_pos is a string": ("complete_request", {"code": "pri", "cursor_pos": "3"},
                               "complete_request: 'cursor_pos' must be an integer, not string"),
    "content is a list": ("inspect_request", [1, 2], "inspect_request: the content must be a JSON object"),
    "history with a null stop": ("history_request", {"hist_access_type": "range", "stop": None},
                                 "history_request: 'stop' must be an integer, not null"),
    "unknown request": ("teleport_request", {}, "teleport_request is not a request this kernel knows"),
}


@pytest.mark.parametrize("what", BAD_REQUESTS)
def test_a_bad_request_gets_an_error_reply_and_the_kernel_goes_on(kernel, what):
    msg_type, content, problem = BAD_REQUESTS[what]
    # Sent as raw JSON: jupyter_client would refuse to build some of these.
    msg = kernel.kc.session.send(kernel.kc.shell_channel.socket, msg_type, content=json.dumps(content).encode())
    reply = kernel.reply_to(msg["header"]["msg_id"])
    assert reply["msg_type"] == msg_type.replace("_request", "_reply")
    assert reply["content"]["status"] == "error"
    assert reply["content"]["evalue"] == f"[splitbrain.kernel_bad_request] {problem}"
    kernel.iopub_until(lambda m: m["parent_header"].get("msg_id") == msg["header"]["msg_id"]
                       and m["msg_type"] == "status" and m["content"]["execution_state"] == "idle")
    reply, outputs = kernel.execute("print('still here')")
    assert printed(outputs) == [("stdout", "still here\n")]


def test_a_bad_control_request_gets_an_error_reply(kernel):
    msg = kernel.kc.session.msg("shutdown_request", {"restart": "yes"})
    kernel.kc.control_channel.send(msg)
    reply = kernel.kc.get_control_msg(timeout=10)
    assert reply["parent_header"]["msg_id"] == msg["header"]["msg_id"]
    assert reply["content"]["evalue"] == (
        "[splitbrain.kernel_bad_request] shutdown_request: 'restart' must be a boolean, not string")
    reply, _ = kernel.execute("x = 1")
    assert reply["status"] == "ok"
