// The operations the worker's main thread answers (splitcore::operations), over one session's
// objects. Runs with the GIL held; knows nothing of sockets: serve_loop.cpp hands it each request.
#pragma once

#include <Python.h>

#include <cstdint>
#include <map>
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

    nlohmann::json box_reference(PyObject* obj) override;
    splitcore::py_ref unbox_reference(const nlohmann::json& ref) override;

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

    splitcore::json take_items(PyObject* iterator, const request& r, bool& done);
    void check_handlers() const;

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
    module_policy m_modules;    // the session key's allow-/deny-modules, from its hello
    lease_guard m_lease_guard;  // the resources other keys leased
};

}  // namespace splitbrain::agent
