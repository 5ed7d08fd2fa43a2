// The box tests need an interpreter: Debian's CPython, isolated from the environment.
#include <Python.h>
#include <gtest/gtest.h>

namespace {
class python_environment : public ::testing::Environment {
public:
    void SetUp() override {
        PyConfig config;
        PyConfig_InitIsolatedConfig(&config);
        config.install_signal_handlers = 0;
        const PyStatus status = Py_InitializeFromConfig(&config);
        PyConfig_Clear(&config);
        if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    }
    void TearDown() override { Py_FinalizeEx(); }
};
}  // namespace

int main(int argc, char** argv) {
    ::testing::InitGoogleTest(&argc, argv);
    ::testing::AddGlobalTestEnvironment(new python_environment);
    return RUN_ALL_TESTS();
}
