"""The kernel's first cell (issue 11, point 7): what it does not need is imported when first used,
and nothing a cell can see differs."""

from conftest import printed

TERMINAL_ONLY = ("prompt_toolkit", "IPython.terminal.interactiveshell", "IPython.terminal.ipapp")


def test_the_first_cell_runs_without_the_terminal_shell_imported(start_kernel):
    kernel = start_kernel()
    reply, outputs = kernel.execute(
        "import sys\n"
        f"print([name for name in {TERMINAL_ONLY!r} if name in sys.modules])")
    assert reply["status"] == "ok"
    assert printed(outputs) == [("stdout", "[]\n")]
    # a first traceback and the magics do not need it either
    reply, _ = kernel.execute("1/0")
    assert reply["ename"] == "ZeroDivisionError"
    reply, outputs = kernel.execute("%time y = 2\n"
                                    f"print([name for name in {TERMINAL_ONLY!r} if name in sys.modules])")
    assert reply["status"] == "ok"
    text = "".join(content["text"] for kind, content in outputs if kind == "stream")
    assert "Wall time" in text and text.endswith("\n[]\n"), text
    assert kernel.shutdown() == 0


def test_the_deferred_module_is_the_real_one_when_used(start_kernel):
    kernel = start_kernel()
    reply, outputs = kernel.execute(
        "import sys, types, IPython\n"
        "from IPython import embed\n"
        "import IPython.terminal.embed as module\n"
        "from IPython.terminal.embed import InteractiveShellEmbed\n"
        "print(embed is IPython.embed is module.embed is vars(IPython)['embed'],\n"
        "      embed.__module__, type(module) is types.ModuleType, type(IPython) is types.ModuleType,\n"
        "      module is sys.modules['IPython.terminal.embed'] is IPython.terminal.embed,\n"
        "      InteractiveShellEmbed.__module__, 'prompt_toolkit' in sys.modules)")
    assert reply["status"] == "ok", reply
    assert printed(outputs) == [("stdout",
                                 "True IPython.terminal.embed True True True IPython.terminal.embed True\n")]
    assert kernel.shutdown() == 0


def test_jedi_waits_for_the_first_completion_which_uses_it(start_kernel):
    kernel = start_kernel()
    # The first cell: jedi's modules exist (IPython's completer imported them) but have not run.
    reply, outputs = kernel.execute(
        "import sys, types\n"
        "print(sorted(n for n in ('jedi', 'jedi.api', 'jedi.api.helpers', 'jedi.api.classes')\n"
        "             if type(sys.modules[n]) is types.ModuleType), 'parso' in sys.modules,\n"
        "      sys.modules['jedi.settings'].case_insensitive_completion)\n"
        "class Thing:\n"
        "    attribute_of_thing = 1\n"
        "thing = Thing()")
    assert reply["status"] == "ok", reply
    assert printed(outputs) == [("stdout", "[] False False\n")]
    # The first completion: jedi runs, and answers (a name only jedi's matcher knows to complete).
    code = "thing.attribute_o"
    reply = kernel.reply_to(kernel.kc.complete(code, len(code)), timeout=60)["content"]
    assert reply["status"] == "ok", reply
    assert "thing.attribute_of_thing" in reply["matches"] or "attribute_of_thing" in reply["matches"], reply
    reply = kernel.reply_to(kernel.kc.inspect("thing", 5), timeout=30)["content"]
    assert reply["status"] == "ok" and reply["found"], reply
    assert "Thing" in reply["data"]["text/plain"], reply
    reply, outputs = kernel.execute(
        "import jedi, jedi.api.helpers\n"
        "print(type(jedi) is type(jedi.api) is type(jedi.api.helpers) is types.ModuleType, 'parso' in sys.modules,\n"
        "      jedi.settings.case_insensitive_completion, callable(jedi.Interpreter), bool(jedi.__version__))")
    assert reply["status"] == "ok", reply
    assert printed(outputs) == [("stdout", "True True False True True\n")]
    assert kernel.shutdown() == 0


def test_pexpect_pydoc_and_asyncio_wait_for_the_first_shell_command_help_and_await(start_kernel):
    kernel = start_kernel()
    reply, outputs = kernel.execute(
        "import sys, types\n"
        "print([n for n in ('pexpect', 'pydoc', 'asyncio') if type(sys.modules[n]) is types.ModuleType],\n"
        "      'ptyprocess' in sys.modules, 'asyncio.base_events' in sys.modules)")
    assert reply["status"] == "ok", reply
    assert printed(outputs) == [("stdout", "[] False False\n")]
    reply, outputs = kernel.execute("import asyncio\n"
                                    "await asyncio.sleep(0)\n"
                                    "print(type(asyncio) is types.ModuleType, asyncio.run.__name__)")
    assert reply["status"] == "ok", reply
    assert printed(outputs) == [("stdout", "True run\n")]
    reply, outputs = kernel.execute("!echo from-a-shell")
    assert reply["status"] == "ok", reply
    assert "from-a-shell" in "".join(c.get("text", "") for kind, c in outputs if kind == "stream"), outputs
    reply, outputs = kernel.execute(
        "import pydoc\n"
        "from pydoc import getdoc\n"
        "print(getdoc(len).split()[0], pydoc.text.repr([1]), type(pydoc) is type(sys.modules['pexpect']) is types.ModuleType)")
    assert reply["status"] == "ok", reply
    assert printed(outputs) == [("stdout", "Return [1] True\n")]
    assert kernel.shutdown() == 0
