// The operations the worker's main thread answers (splitcore::operations), over one session's
// objects. Runs with the GIL held; knows nothing of sockets: serve_loop.cpp hands it each request.
#pragma once

#include <Python.h>

#include <pthread.h>
#include <sys/types.h>
#include <unistd.h>

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <nlohmann/json.hpp>
#include <zmq.hpp>

#include "lease_guard.hpp"
#include "module_policy.hpp"
#include "splitcore/box.hpp"
#include "splitcore/protocol.hpp"
#include "splitcore/wire.hpp"
#include "splitcore/py_ref.hpp"

namespace splitbrain::agent {

class worker : public splitcore::box_hooks {
public:
    // Throws std::logic_error if its handlers and the operations the main thread answers differ.
    worker();

    // One request in, one reply out (header + frames). Never throws.
    splitcore::message dispatch(const splitcore::json& header, const std::vector<zmq::message_t>& frames);

    // True once "bye" was answered: the caller sends the reply, then ends the process.
    [[nodiscard]] bool finished() const noexcept { return m_finished; }
    // Drops every object held for the client (their __del__/close run now).
    void clear_objects();
    // In the zygote, before it forks: what every session's hello would otherwise set up in each
    // worker (the lease guard: its compilation, `import json`, its audit hook).
    void prepare_for_forks() { m_lease_guard.prepare(); }
    // In a worker the zygote forked, before it says it is ready: a session's first "import" run
    // once and forgotten (no object kept, object ids from 1 again), so that the pages it touches
    // are this worker's copies before the client waits for it. Never throws.
    void rehearse_first_requests();

    nlohmann::json box_reference(PyObject* obj) override;
    splitcore::py_ref unbox_reference(const nlohmann::json& ref) override;
    splitcore::py_ref unbox_local(const nlohmann::json& ref) override;
    splitcore::py_ref unbox_named(const nlohmann::json& name) override;

    // Callbacks (callbacks.cpp): how a callback request reaches the client and its answer comes back
    // while the call runs; serve_loop.cpp sets it (it serves nested requests meanwhile). The answer's
    // header and frames; throws python_error (KeyboardInterrupt: the call was cancelled).
    using transport = std::function<splitcore::message(splitcore::json header, std::vector<zmq::message_t> frames)>;
    void set_transport(transport send_and_wait) { m_transport = std::move(send_and_wait); }
    // A use of a proxy of the master's object `target` ("call", "getattr", "setattr", "delattr",
    // "method", "iter", "next"): one round trip to the client. Throws python_error.
    splitcore::py_ref callback(const std::string& op, PyObject* target, PyObject* name, PyObject* args,
                               PyObject* kwargs);

private:
    struct request {
        const splitcore::json& header;
        splitcore::decoder& in;
        splitcore::encoder& out;

        [[nodiscard]] splitcore::py_ref object(const char* field = "o") const;
        [[nodiscard]] splitcore::py_ref value(const char* field) const;
        [[nodiscard]] const std::string& name(const char* field = "name") const;
    };
    using handler = splitcore::json (worker::*)(const request&);

    splitcore::json hello(const request&);
    splitcore::json import_module(const request&);
    splitcore::json getattr(const request&);
    splitcore::json setattr(const request&);
    splitcore::json delattr(const request&);
    splitcore::json call(const request&);
    splitcore::json run(const request&);
    splitcore::json call_with(const request&, PyObject* target);
    splitcore::json getitem(const request&);
    splitcore::json setitem(const request&);
    splitcore::json delitem(const request&);
    splitcore::json len(const request&);
    splitcore::json truth(const request&);
    splitcore::json hash(const request&);
    splitcore::json repr(const request&);
    splitcore::json str(const request&);
    splitcore::json dir(const request&);
    splitcore::json compare(const request&);
    splitcore::json iter(const request&);
    splitcore::json next(const request&);
    splitcore::json enter(const request&);
    splitcore::json exit(const request&);
    splitcore::json release(const request&);
    splitcore::json stats(const request&);
    splitcore::json bye(const request&);

    splitcore::json answer(const request&);
    splitcore::message dispatch_one(const splitcore::json& header, const std::vector<zmq::message_t>& frames);
    splitcore::message failure_reply(std::uint64_t id, const splitcore::python_error& e);

    splitcore::json take_items(PyObject* iterator, const request& r, bool& done);
    void check_handlers() const;

    // callbacks.cpp: the Python side of the master's objects by reference (module _splitbrain_local)
    void install_local_objects();
    [[nodiscard]] bool is_local(PyObject* obj) const;
    [[nodiscard]] splitcore::json take_local_releases();  // [[eid, count], ...] of proxies that died
    void refuse_callbacks_in_child(PyObject* kwargs) const;

    std::map<std::string, handler, std::less<>> m_handler;

    struct entry {
        splitcore::py_ref object;
        std::uint64_t count = 0;  // references the client holds
    };
    std::unordered_map<std::uint64_t, entry> m_objects;
    std::unordered_map<PyObject*, std::uint64_t> m_oid_of;  // identity: one oid per live object
    std::uint64_t m_next_oid = 1;
    splitcore::py_ref m_main;  // __main__.__dict__: globals and locals of every call
    splitcore::py_ref m_call;  // code: __splitbrain_call__[0](*[1], **[2]), run in m_main
    bool m_finished = false;

    // callbacks.cpp
    splitcore::py_ref m_local_module;  // _splitbrain_local: make(), LocalObject, released
    splitcore::py_ref m_local_base;    // its LocalObject class
    transport m_transport;
    std::vector<std::uint64_t> m_serving;  // ids of the requests being served, the innermost last
    std::uint64_t m_callbacks = 0;         // callback requests sent so far: each one's "cb"
    int m_callback_depth = 0;              // callbacks waiting for their answer, nested
    pthread_t m_main_thread = ::pthread_self();
    pid_t m_pid = ::getpid();
    module_policy m_modules;    // the session key's allow-/deny-modules, from its hello
    lease_guard m_lease_guard;  // the resources other keys leased
    // The Python error a call ended in, handed from call_with to dispatch_one without a C++ throw.
    std::optional<splitcore::python_error> m_call_failed;
};

}  // namespace splitbrain::agent
