"""What the pytest suites run on: each suite's conftest.py declares PACKAGES to splitbrain's routing
(``splitbrain._routing.exempt(*PACKAGES)``) as it imports splitbrain, so they act on the master
whatever slave a test makes active: pytest reports, waits and talks to kernels and browsers from here."""

PACKAGES = (
    # pytest and what it imports to run and report
    "pytest", "_pytest", "pluggy", "py", "pytest_timeout", "pygments",
    # the suites' own clients: a raw protocol client, Jupyter's messaging, notebooks, JupyterLab
    "cbor2", "zmq", "jupyter_client", "jupyter_core", "traitlets", "tornado", "platformdirs", "psutil",
    "jupyter_kernel_test", "nbconvert", "nbformat", "nbclient", "playwright", "greenlet",
    "jupyter_server", "jupyterlab", "notebook", "anyio", "sniffio",
)

