#include "audit_trail.hpp"

#include <openssl/evp.h>

namespace splitbrain::agent {

using splitcore::json;

namespace {

constexpr std::size_t max_names_per_session = 10000;

double now_seconds() {
    return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// sha256 of the request's argument fields (their CBOR) and its raw frames.
std::string digest(const json& header, const std::vector<zmq::message_t>& frames, std::size_t first_frame) {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    if (ctx == nullptr) return "";
    EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
    bool any = false;
    for (const char* field : {"a", "k", "v", "src", "free", "exc"}) {
        const auto found = header.find(field);
        if (found == header.end()) continue;
        const std::vector<std::uint8_t> cbor = json::to_cbor(*found);
        EVP_DigestUpdate(ctx, field, 1);
        EVP_DigestUpdate(ctx, cbor.data(), cbor.size());
        any = true;
    }
    for (std::size_t i = first_frame; i < frames.size(); ++i) {
        EVP_DigestUpdate(ctx, frames[i].data(), frames[i].size());
        any = true;
    }
    unsigned char raw[EVP_MAX_MD_SIZE];
    unsigned int size = 0;
    EVP_DigestFinal_ex(ctx, raw, &size);
    EVP_MD_CTX_free(ctx);
    if (!any) return "";
    static const char hex[] = "0123456789abcdef";
    std::string text = "sha256:";
    for (unsigned int i = 0; i < size; ++i) {
        text += hex[raw[i] >> 4];
        text += hex[raw[i] & 15];
    }
    return text;
}

std::string short_token(const std::string& token) { return token.substr(0, 12); }

}  // namespace

std::string audit_trail::name_of(const std::string& token, const json* ref) const {
    if (ref == nullptr || !ref->is_object()) return "";
    const auto oid = ref->find("$r");
    if (oid == ref->end() || !oid->is_number_unsigned()) return "";
    if (const auto names = m_names.find(token); names != m_names.end()) {
        if (const auto name = names->second.of_oid.find(oid->get<std::uint64_t>());
            name != names->second.of_oid.end()) {
            return name->second;
        }
    }
    return "#" + std::to_string(oid->get<std::uint64_t>());
}

void audit_trail::begin(const std::string& token, const std::string& who, std::uint64_t id, const json& header,
                        const std::vector<zmq::message_t>& frames, std::size_t first_frame) {
    if (!m_log) return;
    pending p;
    p.start = clock::now();
    audit_record& r = p.record;
    r.time = now_seconds();
    r.who = who;
    r.session = short_token(token);
    r.op = header.value("op", "");
    auto text = [&](const char* field) {
        const auto found = header.find(field);
        return found != header.end() && found->is_string() ? found->get<std::string>() : std::string();
    };
    const json* object = header.contains("o") ? &header["o"] : nullptr;
    if (r.op == "import") {
        r.target = text("name");
        p.names_result = true;
    } else if (r.op == "run") {
        r.target = "run:" + text("name");
    } else if (r.op == "call") {
        r.target = name_of(token, object);
        if (const auto path = header.find("path"); path != header.end() && path->is_array()) {
            for (const auto& step : *path) r.target += "." + (step.is_string() ? step.get<std::string>() : "?");
        }
        p.names_result = true;
    } else if (r.op == "getattr" || r.op == "setattr" || r.op == "delattr") {
        r.target = name_of(token, object) + "." + text("name");
        p.names_result = r.op == "getattr";
    } else {
        r.target = name_of(token, object);
    }
    r.args = digest(header, frames, first_frame);
    m_pending[{token, id}] = std::move(p);
}

void audit_trail::end(const std::string& token, std::uint64_t id, const json& reply) {
    if (!m_log) return;
    const auto found = m_pending.find({token, id});
    if (found == m_pending.end()) return;
    pending p = std::move(found->second);
    m_pending.erase(found);
    const bool ok = reply.value("ok", false);
    if (ok) {
        p.record.outcome = "ok";
        const auto result = reply.find("r");
        if (p.names_result && result != reply.end() && result->is_object()) {
            const json* ref = result->contains("mod") ? &(*result)["mod"] : &*result;
            if (const auto oid = ref->find("$r"); oid != ref->end() && oid->is_number_unsigned()) {
                auto& names = m_names[token].of_oid;
                if (names.size() < max_names_per_session) {
                    names[oid->get<std::uint64_t>()] = p.record.target + (p.record.op == "call" ? "()" : "");
                }
            }
        }
    } else if (const auto e = reply.find("e"); e != reply.end() && e->is_object()) {
        const auto code = e->find("code");
        p.record.outcome = code != e->end() && code->is_string() ? code->get<std::string>()
                                                                 : "raised " + e->value("type", std::string("?"));
    } else {
        p.record.outcome = "error";
    }
    p.record.ms = std::chrono::duration<double, std::milli>(clock::now() - p.start).count();
    m_log->write(std::move(p.record));
}

void audit_trail::answered(const std::string& token, const std::string& who, const std::string& op,
                           const std::string& target, const std::string& outcome) {
    if (!m_log) return;
    audit_record r;
    r.time = now_seconds();
    r.who = who;
    r.session = short_token(token);
    r.op = op;
    r.target = target;
    r.outcome = outcome;
    m_log->write(std::move(r));
}

void audit_trail::forget(const std::string& token, const std::string& outcome) {
    if (!m_log) return;
    for (auto it = m_pending.lower_bound({token, 0}); it != m_pending.end() && it->first.first == token;) {
        it->second.record.outcome = outcome;
        it->second.record.ms = std::chrono::duration<double, std::milli>(clock::now() - it->second.start).count();
        m_log->write(std::move(it->second.record));
        it = m_pending.erase(it);
    }
    m_names.erase(token);
}

}  // namespace splitbrain::agent
