// quorumkv.hpp: a header-only C++17 RAII wrapper over the quorumkv C API (quorumkv.h).
//
// Rules that hold for everything below unless a comment says otherwise:
// - Errors: a failed call throws `quorumkv::error` (a std::runtime_error) carrying the
//   `qkv_result` code (`code()`), and a message made of `qkv_result_message(code)` and the
//   detail text of the failure (`qkv_last_error`, which is per thread, so concurrent calls
//   never mix their details). std::bad_alloc may also be thrown. Nothing throws from a
//   destructor, a move, or a `reset()`.
// - Ownership: every type wrapping a library handle (node, config, watch, txn, kvs,
//   events, txn_result, keys, keepalive, bytes) is move-only and frees its handle exactly
//   once; a moved-from object is empty (its handle is NULL): it is safe to destroy, to
//   reset, to assign to, and calls on it fail with QKV_NULL_PARAMETER (or return
//   zeroes/empty for accessors that cannot fail). `*_view` types (kvs_view, events_view,
//   txn_result_view) borrow from the object they were read from and must not outlive it.
//   Values returned as std::string / key_value / event are copies and own their bytes.
// - Bytes: keys and values are std::string_view (any bytes, NUL allowed, passed as
//   pointer + length); names, addresses and file paths are text without NUL bytes.
// - Threads: `node` methods may be called from any thread concurrently (they are const
//   and block the calling thread); result objects are immutable and may be read from
//   several threads; builders (config, txn) must not be used from two threads at once.
#ifndef QUORUMKV_HPP
#define QUORUMKV_HPP

#include "quorumkv.h"

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace quorumkv {

/// The library's version string ("0.1.0"). Never throws; thread-safe.
inline std::string_view version() noexcept { return qkv_version(); }

/// The ABI version of the loaded library; compare with QKV_ABI_VERSION. Never throws.
inline uint32_t abi_version() noexcept { return qkv_abi_version(); }

/// The static text of a result code (etcd's text for etcd's errors). Never throws.
inline std::string_view result_message(qkv_result code) noexcept {
    return qkv_result_message(static_cast<int32_t>(code));
}

/// A range end meaning "every key >= key" (etcd's `WithFromKey`): a single NUL byte.
inline constexpr std::string_view from_key{"\0", 1};

/// The exception thrown by every failing call. `code()` is the qkv_result; `detail()` the
/// library's detail text; `what()` is "<result message>: <detail>". Copying never throws.
class error : public std::runtime_error {
public:
    /// Makes an error for `code` with `detail` text and, for QKV_COMPACTED from a watch,
    /// the revision the store was compacted to (0 otherwise).
    error(qkv_result code, std::string detail, int64_t compact_revision = 0)
        : std::runtime_error(compose(code, detail)),
          code_(code),
          detail_(std::make_shared<const std::string>(std::move(detail))),
          compact_revision_(compact_revision) {}

    /// The qkv_result code. Never throws.
    qkv_result code() const noexcept { return code_; }
    /// The detail text of the failure (may be empty). Never throws.
    const std::string& detail() const noexcept { return *detail_; }
    /// For QKV_COMPACTED reported by a watch: the compaction revision to restart from
    /// (0 otherwise). Never throws.
    int64_t compact_revision() const noexcept { return compact_revision_; }

private:
    static std::string compose(qkv_result code, const std::string& detail) {
        std::string text = qkv_result_message(static_cast<int32_t>(code));
        if (!detail.empty() && detail != text) text += ": " + detail;
        return text;
    }

    qkv_result code_;
    std::shared_ptr<const std::string> detail_;
    int64_t compact_revision_;
};

namespace detail {

inline const uint8_t* ptr(std::string_view s) noexcept {
    return reinterpret_cast<const uint8_t*>(s.data());
}

inline std::string_view view(const uint8_t* p, size_t n) noexcept {
    return n == 0 ? std::string_view() : std::string_view(reinterpret_cast<const char*>(p), n);
}

// Reads a text through a `size_t f(char *buf, size_t len)` copier of the C API.
template <class F>
std::string copy_text(F&& f) {
    size_t n = f(nullptr, 0);
    std::string s;
    for (;;) {
        s.assign(n + 1, '\0');
        size_t m = f(&s[0], s.size());
        if (m <= n) {
            s.resize(m);
            return s;
        }
        n = m;  // it grew in between (a per-handle text): try again
    }
}

inline std::string last_error_text() {
    return copy_text([](char* buf, size_t len) { return qkv_last_error(buf, len); });
}

inline void check(qkv_result rc) {
    if (rc != QKV_OK) throw error(rc, last_error_text());
}

// A NUL-terminated copy of a text argument; text with a NUL byte is refused.
inline std::string c_text(std::string_view s, const char* what) {
    if (s.find('\0') != std::string_view::npos)
        throw error(QKV_INVALID_ARGUMENT, std::string(what) + " contains a NUL byte");
    return std::string(s);
}

inline uint64_t millis(std::chrono::milliseconds d) noexcept {
    return d.count() <= 0 ? 0 : static_cast<uint64_t>(d.count());
}

// An input iterator over an indexable result object (yields copies).
template <class Container, class Value>
class index_iterator {
public:
    using iterator_category = std::input_iterator_tag;
    using value_type = Value;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = Value;

    index_iterator(const Container* c, size_t i) noexcept : c_(c), i_(i) {}
    Value operator*() const { return (*c_)[i_]; }
    index_iterator& operator++() noexcept {
        ++i_;
        return *this;
    }
    index_iterator operator++(int) noexcept {
        index_iterator old = *this;
        ++i_;
        return old;
    }
    bool operator==(const index_iterator& o) const noexcept { return c_ == o.c_ && i_ == o.i_; }
    bool operator!=(const index_iterator& o) const noexcept { return !(*this == o); }

private:
    const Container* c_;
    size_t i_;
};

// The default storage of a unique_handle: the handle, with the accessors an owner may
// re-export (`using`).
template <class Handle>
class handle_base {
public:
    /// The C handle (borrowed; NULL when empty or moved from). Never throws.
    const Handle* handle() const noexcept { return p_; }
    /// Whether it holds a handle. Never throws.
    explicit operator bool() const noexcept { return p_ != nullptr; }

protected:
    handle_base() noexcept = default;
    explicit handle_base(Handle* h) noexcept : p_(h) {}

    Handle* p_ = nullptr;
};

// The lifetime shared by every type owning a library handle: move-only, frees the handle
// exactly once with `Free`, a moved-from object is empty (NULL handle). The handle lives
// in `Base::p_` (a Handle* or const Handle*): a handle_base, or for a result object its
// `*_view`, so the owner reads as the view does. Owners inherit it privately (so the view
// cannot be reassigned behind the owner's back) and re-export what is theirs (`using`).
template <class Handle, void (*Free)(Handle*), class Base = handle_base<Handle>>
class unique_handle : public Base {
public:
    /// An empty object (no handle). Never throws.
    unique_handle() noexcept = default;
    /// Takes ownership of `h` (may be NULL: empty). Never throws.
    explicit unique_handle(Handle* h) noexcept : Base(h) {}
    /// Takes `o`'s handle; `o` becomes empty. Never throws.
    unique_handle(unique_handle&& o) noexcept : Base(o.release()) {}
    /// Frees the current handle and takes `o`'s; `o` becomes empty. Never throws.
    unique_handle& operator=(unique_handle&& o) noexcept {
        if (this != &o) {
            reset();
            this->p_ = o.release();
        }
        return *this;
    }
    unique_handle(const unique_handle&) = delete;
    unique_handle& operator=(const unique_handle&) = delete;
    /// Frees the handle, if any (see reset()). Never throws.
    ~unique_handle() { reset(); }

    /// Frees the handle now (no-op when empty); the object becomes empty. Never throws.
    void reset() noexcept { Free(release()); }
    /// Gives up ownership: returns the handle (the caller frees it with the matching
    /// qkv_*_free) and the object becomes empty. Never throws.
    Handle* release() noexcept { return const_cast<Handle*>(std::exchange(this->p_, nullptr)); }
};

}  // namespace detail

// ---------------------------------------------------------------------------------------
// Plain values

/// etcd's ResponseHeader, returned with every response.
struct response_header {
    uint64_t cluster_id = 0;  ///< stable id of the cluster
    uint64_t member_id = 0;   ///< member that served the request
    int64_t revision = 0;     ///< store revision when served (after it, for writes)
    uint64_t raft_term = 0;   ///< Raft term when served
};

/// One key-value, owning copies of its key and value.
struct key_value {
    std::string key;
    std::string value;          ///< empty with keys_only, and in delete events
    int64_t create_revision = 0;
    int64_t mod_revision = 0;
    int64_t version = 0;        ///< modifications since creation (1 after creation)
    int64_t lease = 0;          ///< attached lease id, 0 for none
};

/// One member of the cluster.
struct member {
    uint64_t id = 0;
    std::string name;         ///< "" for a member added but not started yet
    std::string peer_addr;    ///< its (first) peer address, host:port
    std::string client_addr;  ///< its (first) client address, "" when none
    bool is_learner = false;
};

/// One node's state (see qkv_status for each field's meaning).
struct node_status {
    uint64_t id = 0, cluster_id = 0, term = 0, leader = 0;
    uint64_t commit_index = 0, applied_index = 0, last_log_index = 0;
    int64_t revision = 0, compact_revision = 0;
    uint64_t db_size_bytes = 0, fsync_count = 0, watch_count = 0, leader_changes = 0;
    bool is_leader = false, is_learner = false, has_leader = false, fatal = false;
};

namespace detail {
inline response_header to_header(const qkv_header& h) noexcept {
    return response_header{h.cluster_id, h.member_id, h.revision, h.raft_term};
}
inline key_value to_key_value(const qkv_kv& kv) {
    return key_value{std::string(view(kv.key, kv.key_len)), std::string(view(kv.value, kv.value_len)),
                     kv.create_revision, kv.mod_revision, kv.version, kv.lease};
}
}  // namespace detail

/// How a range is sorted.
enum class sort_order : int32_t { none = QKV_SORT_NONE, ascend = QKV_SORT_ASCEND, descend = QKV_SORT_DESCEND };
/// What a range is sorted by.
enum class sort_target : int32_t {
    key = QKV_SORT_BY_KEY,
    version = QKV_SORT_BY_VERSION,
    create = QKV_SORT_BY_CREATE,
    mod = QKV_SORT_BY_MOD,
    value = QKV_SORT_BY_VALUE,
};

/// Options of put (etcd PutRequest). Defaults: no lease, no prev_kv.
struct put_options {
    int64_t lease = 0;          ///< lease to attach, 0 for none
    bool prev_kv = false;       ///< return the previous key-value
    bool ignore_value = false;  ///< keep the current value (key must exist; pass an empty value)
    bool ignore_lease = false;  ///< keep the current lease (key must exist; lease must be 0)
};

/// Options of get and range (etcd RangeRequest). Defaults: a linearizable read of the
/// current revision.
struct range_options {
    int64_t limit = 0;     ///< most keys returned, 0: no limit
    int64_t revision = 0;  ///< read at this past revision, 0: current
    sort_order order = sort_order::none;
    sort_target target = sort_target::key;
    int64_t min_mod_revision = 0, max_mod_revision = 0;        ///< 0: no bound
    int64_t min_create_revision = 0, max_create_revision = 0;  ///< 0: no bound
    bool serializable = false;  ///< serve locally without a Raft round (may be stale)
    bool keys_only = false;     ///< keys without values
    bool count_only = false;    ///< only the count
    bool prefix = false;        ///< range only: every key starting with key
};

/// Options of delete_range.
struct delete_options {
    bool prefix = false;   ///< every key starting with key
    bool prev_kv = false;  ///< return the deleted key-values
};

/// Options of a watch. Defaults: changes after now, puts and deletes, no prev_kv.
struct watch_options {
    int64_t start_revision = 0;  ///< first revision to report (replays history), 0: now
    bool prefix = false;         ///< every key starting with key
    bool prev_kv = false;        ///< report each event's previous key-value
    bool no_put = false;         ///< do not report puts
    bool no_delete = false;      ///< do not report deletes
    bool progress_notify = false;  ///< periodic empty responses while idle
};

namespace detail {
inline qkv_put_options to_c(const put_options& o) noexcept {
    qkv_put_options c{};
    c.size = sizeof c;
    c.lease = o.lease;
    c.prev_kv = o.prev_kv;
    c.ignore_value = o.ignore_value;
    c.ignore_lease = o.ignore_lease;
    return c;
}
inline qkv_range_options to_c(const range_options& o) noexcept {
    qkv_range_options c{};
    c.size = sizeof c;
    c.limit = o.limit;
    c.revision = o.revision;
    c.sort_order = static_cast<int32_t>(o.order);
    c.sort_target = static_cast<int32_t>(o.target);
    c.min_mod_revision = o.min_mod_revision;
    c.max_mod_revision = o.max_mod_revision;
    c.min_create_revision = o.min_create_revision;
    c.max_create_revision = o.max_create_revision;
    c.serializable = o.serializable;
    c.keys_only = o.keys_only;
    c.count_only = o.count_only;
    c.prefix = o.prefix;
    return c;
}
inline qkv_delete_options to_c(const delete_options& o) noexcept {
    qkv_delete_options c{};
    c.size = sizeof c;
    c.prefix = o.prefix;
    c.prev_kv = o.prev_kv;
    return c;
}
inline qkv_watch_options to_c(const watch_options& o) noexcept {
    qkv_watch_options c{};
    c.size = sizeof c;
    c.start_revision = o.start_revision;
    c.prefix = o.prefix;
    c.prev_kv = o.prev_kv;
    c.no_put = o.no_put;
    c.no_delete = o.no_delete;
    c.progress_notify = o.progress_notify;
    return c;
}
}  // namespace detail

// ---------------------------------------------------------------------------------------
// Result objects

/// A borrowed view of a key-value list (a range result, a txn op's list). Valid while the
/// object it came from lives. Copyable; reading is thread-safe.
class kvs_view {
public:
    using iterator = detail::index_iterator<kvs_view, key_value>;

    /// An empty view. Never throws.
    kvs_view() noexcept = default;
    /// Borrows `list` (may be NULL: empty). Never throws.
    explicit kvs_view(const qkv_kvs* list) noexcept : p_(list) {}

    /// Number of key-values. Never throws.
    size_t size() const noexcept { return qkv_kvs_len(p_); }
    /// Whether there are none. Never throws.
    bool empty() const noexcept { return size() == 0; }
    /// A copy of key-value `i`. Throws error(QKV_INVALID_ARGUMENT) when out of range.
    key_value operator[](size_t i) const { return detail::to_key_value(raw(i)); }
    /// Key-value `i` as the C view, borrowing from the list (no copy). Throws as [].
    qkv_kv raw(size_t i) const {
        qkv_kv kv{};
        detail::check(qkv_kvs_get(p_, i, &kv));
        return kv;
    }
    /// The response header. Never throws.
    response_header header() const noexcept { return detail::to_header(qkv_kvs_header(p_)); }
    /// For a range: keys in the range before `limit` (etcd count). Never throws.
    int64_t count() const noexcept { return qkv_kvs_count(p_); }
    /// For a range: whether `limit` cut keys (etcd more). Never throws.
    bool more() const noexcept { return qkv_kvs_more(p_); }
    /// Copies of all key-values. Throws std::bad_alloc only.
    std::vector<key_value> to_vector() const {
        std::vector<key_value> out;
        out.reserve(size());
        for (size_t i = 0; i < size(); i++) out.push_back((*this)[i]);
        return out;
    }
    /// Iteration yields copies (key_value). Never throws.
    iterator begin() const noexcept { return iterator(this, 0); }
    /// Past the last element. Never throws.
    iterator end() const noexcept { return iterator(this, size()); }
    /// The C handle (borrowed). Never throws.
    const qkv_kvs* handle() const noexcept { return p_; }

protected:
    const qkv_kvs* p_ = nullptr;
};

/// An owned key-value list (freed with qkv_kvs_free). Move-only; reads as kvs_view does
/// (the view is a private base, so it cannot be reassigned behind the owner's back).
class kvs : private detail::unique_handle<qkv_kvs, qkv_kvs_free, kvs_view> {
public:
    // Lifetime as detail::unique_handle: empty default, from a handle, move, reset, release.
    using unique_handle::unique_handle;
    using unique_handle::reset;
    using unique_handle::release;
    using kvs_view::iterator;
    using kvs_view::size;
    using kvs_view::empty;
    using kvs_view::operator[];
    using kvs_view::raw;
    using kvs_view::header;
    using kvs_view::count;
    using kvs_view::more;
    using kvs_view::to_vector;
    using kvs_view::begin;
    using kvs_view::end;
    using kvs_view::handle;
    /// A borrowed view (valid while this list lives). Never throws.
    kvs_view view() const noexcept { return *this; }
};

/// What happened to a key.
enum class event_type : int32_t { put = QKV_EVENT_PUT, delete_ = QKV_EVENT_DELETE };

/// One watch event (owning copies).
struct event {
    event_type type = event_type::put;
    key_value kv;                     ///< after the change; for a delete: key and mod_revision
    std::optional<key_value> prev_kv;  ///< before the change, when asked for and it existed
};

/// A borrowed view of one watch response (events of whole revisions, or none for a
/// progress notification). In a callback it is valid for the call only. Copyable.
class events_view {
public:
    using iterator = detail::index_iterator<events_view, event>;

    /// An empty view. Never throws.
    events_view() noexcept = default;
    /// Borrows `events` (may be NULL). Never throws.
    explicit events_view(const qkv_events* events) noexcept : p_(events) {}

    /// Number of events (0: a progress notification). Never throws.
    size_t size() const noexcept { return qkv_events_len(p_); }
    /// Whether there are none. Never throws.
    bool empty() const noexcept { return size() == 0; }
    /// A copy of event `i`. Throws error(QKV_INVALID_ARGUMENT) when out of range.
    event operator[](size_t i) const {
        qkv_event e = raw(i);
        event out;
        out.type = static_cast<event_type>(e.kind);
        out.kv = detail::to_key_value(e.kv);
        if (e.has_prev_kv) out.prev_kv = detail::to_key_value(e.prev_kv);
        return out;
    }
    /// Event `i` as the C view (borrowed, no copy). Throws as [].
    qkv_event raw(size_t i) const {
        qkv_event e{};
        detail::check(qkv_events_get(p_, i, &e));
        return e;
    }
    /// The header: its revision is the one the watch has seen everything up to. Never throws.
    response_header header() const noexcept { return detail::to_header(qkv_events_header(p_)); }
    /// Copies of all events. Throws std::bad_alloc only.
    std::vector<event> to_vector() const {
        std::vector<event> out;
        out.reserve(size());
        for (size_t i = 0; i < size(); i++) out.push_back((*this)[i]);
        return out;
    }
    /// Iteration yields copies (event). Never throws.
    iterator begin() const noexcept { return iterator(this, 0); }
    /// Past the last element. Never throws.
    iterator end() const noexcept { return iterator(this, size()); }
    /// The C handle (borrowed). Never throws.
    const qkv_events* handle() const noexcept { return p_; }

protected:
    const qkv_events* p_ = nullptr;
};

/// An owned watch response from watch::next (freed with qkv_events_free). Move-only;
/// reads as events_view does (a private base, so it cannot be reassigned).
class events : private detail::unique_handle<qkv_events, qkv_events_free, events_view> {
public:
    // Lifetime as detail::unique_handle: empty default, from a handle, move, reset, release.
    using unique_handle::unique_handle;
    using unique_handle::reset;
    using unique_handle::release;
    using events_view::iterator;
    using events_view::size;
    using events_view::empty;
    using events_view::operator[];
    using events_view::raw;
    using events_view::header;
    using events_view::to_vector;
    using events_view::begin;
    using events_view::end;
    using events_view::handle;
    /// A borrowed view (valid while this response lives). Never throws.
    events_view view() const noexcept { return *this; }
};

/// Which kind of operation a txn op result is.
enum class op_type : int32_t {
    range = QKV_OP_RANGE,
    put = QKV_OP_PUT,
    delete_range = QKV_OP_DELETE_RANGE,
    txn = QKV_OP_TXN,
};

struct txn_op_result;

/// A borrowed view of a transaction result (the top one or a nested one). Valid while
/// the owning txn_result lives. Copyable; reading is thread-safe.
class txn_result_view {
public:
    using iterator = detail::index_iterator<txn_result_view, txn_op_result>;

    /// An empty view. Never throws.
    txn_result_view() noexcept = default;
    /// Borrows `r` (may be NULL). Never throws.
    explicit txn_result_view(const qkv_txn_result* r) noexcept : p_(r) {}

    /// Whether the compares held and the success branch ran. Never throws.
    bool succeeded() const noexcept { return qkv_txn_result_succeeded(p_); }
    /// The transaction's header (its revision is the transaction's). Never throws.
    response_header header() const noexcept { return detail::to_header(qkv_txn_result_header(p_)); }
    /// Number of operation results (of the branch that ran). Never throws.
    size_t size() const noexcept { return qkv_txn_result_len(p_); }
    /// Whether there are none. Never throws.
    bool empty() const noexcept { return size() == 0; }
    /// Operation result `i` (its kvs and nested txn borrow from this result). Throws
    /// error(QKV_INVALID_ARGUMENT) when out of range.
    txn_op_result operator[](size_t i) const;
    /// Iteration yields txn_op_result values. Never throws.
    iterator begin() const noexcept;
    /// Past the last element. Never throws.
    iterator end() const noexcept;
    /// The C handle (borrowed). Never throws.
    const qkv_txn_result* handle() const noexcept { return p_; }

protected:
    const qkv_txn_result* p_ = nullptr;
};

/// One operation's result in a transaction, borrowing from its txn_result.
struct txn_op_result {
    op_type type = op_type::range;
    response_header header;
    int64_t deleted = 0;     ///< keys deleted (delete_range), else 0
    kvs_view kvs;            ///< a range's keys, a put's prev kv, a delete's deleted kvs
    txn_result_view nested;  ///< the nested transaction's result (op_type::txn)
};

inline txn_op_result txn_result_view::operator[](size_t i) const {
    qkv_txn_op op{};
    detail::check(qkv_txn_result_op(p_, i, &op));
    txn_op_result out;
    out.type = static_cast<op_type>(op.kind);
    out.header = detail::to_header(op.header);
    out.deleted = op.deleted;
    out.kvs = kvs_view(op.kvs);
    out.nested = txn_result_view(op.txn);
    return out;
}
inline txn_result_view::iterator txn_result_view::begin() const noexcept { return iterator(this, 0); }
inline txn_result_view::iterator txn_result_view::end() const noexcept { return iterator(this, size()); }

/// An owned transaction result (freed with qkv_txn_result_free; nested results are part
/// of it). Move-only; reads as txn_result_view does (a private base, so it cannot be
/// reassigned).
class txn_result : private detail::unique_handle<qkv_txn_result, qkv_txn_result_free, txn_result_view> {
public:
    // Lifetime as detail::unique_handle: empty default, from a handle, move, reset, release.
    using unique_handle::unique_handle;
    using unique_handle::reset;
    using unique_handle::release;
    using txn_result_view::iterator;
    using txn_result_view::succeeded;
    using txn_result_view::header;
    using txn_result_view::size;
    using txn_result_view::empty;
    using txn_result_view::operator[];
    using txn_result_view::begin;
    using txn_result_view::end;
    using txn_result_view::handle;
    /// A borrowed view (valid while this result lives). Never throws.
    txn_result_view view() const noexcept { return *this; }
};

/// An owned list of keys (a lease's keys; freed with qkv_keys_free). Move-only;
/// reading is thread-safe.
class keys : private detail::unique_handle<qkv_keys, qkv_keys_free> {
public:
    using iterator = detail::index_iterator<keys, std::string>;

    // Lifetime as detail::unique_handle: empty default, from a handle, move, reset.
    using unique_handle::unique_handle;
    using unique_handle::reset;
    using unique_handle::handle;

    /// Number of keys. Never throws.
    size_t size() const noexcept { return qkv_keys_len(p_); }
    /// Whether there are none. Never throws.
    bool empty() const noexcept { return size() == 0; }
    /// A copy of key `i`. Throws error(QKV_INVALID_ARGUMENT) when out of range.
    std::string operator[](size_t i) const { return std::string(view(i)); }
    /// Key `i`, borrowed from this list (no copy). Throws as [].
    std::string_view view(size_t i) const {
        const uint8_t* k = nullptr;
        size_t n = 0;
        detail::check(qkv_keys_get(p_, i, &k, &n));
        return detail::view(k, n);
    }
    /// Iteration yields copies (std::string). Never throws.
    iterator begin() const noexcept { return iterator(this, 0); }
    /// Past the last element. Never throws.
    iterator end() const noexcept { return iterator(this, size()); }
};

/// An owned byte buffer handed out by the library (freed with qkv_bytes_free). Move-only.
class bytes {
public:
    /// An empty object (no handle). Never throws.
    bytes() noexcept = default;
    /// Takes ownership of `b`. Never throws.
    explicit bytes(qkv_bytes b) noexcept : b_(b) {}
    /// Takes `o`'s handle; `o` becomes empty. Never throws.
    bytes(bytes&& o) noexcept : b_(std::exchange(o.b_, qkv_bytes{nullptr, 0})) {}
    /// Frees the current handle and takes `o`'s; `o` becomes empty. Never throws.
    bytes& operator=(bytes&& o) noexcept {
        if (this != &o) {
            reset();
            b_ = std::exchange(o.b_, qkv_bytes{nullptr, 0});
        }
        return *this;
    }
    bytes(const bytes&) = delete;
    bytes& operator=(const bytes&) = delete;
    /// Frees the handle, if any (see reset()). Never throws.
    ~bytes() { reset(); }

    /// The bytes (NULL when empty), borrowed. Never throws.
    const uint8_t* data() const noexcept { return b_.ptr; }
    /// How many. Never throws.
    size_t size() const noexcept { return b_.len; }
    /// Whether there are none. Never throws.
    bool empty() const noexcept { return b_.len == 0; }
    /// The bytes as a view, borrowed from this buffer. Never throws.
    std::string_view view() const noexcept { return detail::view(b_.ptr, b_.len); }
    /// A copy as std::string. Throws std::bad_alloc only.
    std::string str() const { return std::string(view()); }
    /// Frees the buffer now; the object becomes empty. Never throws.
    void reset() noexcept { qkv_bytes_free(&b_); }
    /// Gives up ownership (free with qkv_bytes_free). Never throws.
    qkv_bytes release() noexcept { return std::exchange(b_, qkv_bytes{nullptr, 0}); }

private:
    qkv_bytes b_{nullptr, 0};
};

/// Response of node::put.
struct put_response {
    response_header header;            ///< its revision is the put's
    std::optional<key_value> prev_kv;  ///< with put_options::prev_kv, when the key existed
};

/// Response of node::delete_range.
struct delete_response {
    response_header header;
    int64_t deleted = 0;  ///< how many keys were deleted
    kvs prev_kvs;         ///< the deleted key-values, with delete_options::prev_kv (owned)
};

/// Response of node::lease_grant.
struct lease_grant_response {
    int64_t id = 0;   ///< the lease id
    int64_t ttl = 0;  ///< the granted TTL, seconds
    response_header header;
};

/// Response of node::lease_time_to_live.
struct lease_ttl_response {
    int64_t id = 0;
    int64_t ttl = -1;  ///< seconds left; -1 when the lease does not exist or expired
    int64_t granted_ttl = 0;
    response_header header;
    keys attached_keys;  ///< the attached keys, when asked for (owned)
};

// ---------------------------------------------------------------------------------------
// Builders

/// Nodes of this process that reach each other in memory instead of over loopback TCP
/// (qkv_local_network): give the same network to each node's config
/// (config::local_network). Move-only; configs and nodes keep their own reference, so it
/// may be destroyed while they run. Safe to use from several threads at once.
class local_network : private detail::unique_handle<qkv_local_network, qkv_local_network_free> {
public:
    /// An empty network.
    local_network() { detail::check(qkv_local_network_new(&p_)); }
    // Moves as detail::unique_handle.

    /// How many times a node reached another through the network so far (Raft messages,
    /// heartbeats included, and forwarded requests).
    uint64_t deliveries() const {
        uint64_t n = 0;
        detail::check(qkv_local_network_deliveries(p_, &n));
        return n;
    }
    /// How many client requests a node forwarded to its leader through the network so far.
    uint64_t forwarded() const {
        uint64_t n = 0;
        detail::check(qkv_local_network_forwarded(p_, &n));
        return n;
    }

    using unique_handle::handle;
    using unique_handle::operator bool;
};

/// A node configuration (qkv_config). Fluent: every setter returns the config (an lvalue
/// reference, or an rvalue one when called on a temporary, so
/// `auto cfg = quorumkv::config(...).timeouts(...)` moves). Move-only. Not for two threads
/// at once. Setters throw error(QKV_INVALID_ARGUMENT) for invalid or NUL-containing text.
class config : private detail::unique_handle<qkv_config, qkv_config_free> {
public:
    /// A config for node `name` with data in `data_dir` (created if missing), listening
    /// for peers on `peer_addr` (host:port), etcd's defaults for the rest (alone: a
    /// one-node cluster). Throws error(QKV_INVALID_ARGUMENT) for an empty name or bad text.
    config(std::string_view name, std::string_view data_dir, std::string_view peer_addr) {
        detail::check(qkv_config_new(detail::c_text(name, "name").c_str(),
                                     detail::c_text(data_dir, "data_dir").c_str(),
                                     detail::c_text(peer_addr, "peer_addr").c_str(), &p_));
    }
    // Moves as detail::unique_handle.

    /// Static bootstrap: adds member (`name`, `peer_addr`) of the initial cluster (give
    /// every member, this one included, the same list).
    config& initial_member(std::string_view name, std::string_view peer_addr) & {
        detail::check(qkv_config_add_initial_member(p_, detail::c_text(name, "name").c_str(),
                                                    detail::c_text(peer_addr, "peer_addr").c_str()));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& initial_member(std::string_view name, std::string_view peer_addr) && {
        return std::move(initial_member(name, peer_addr));
    }
    /// Join: adds the peer address of a running member to join through.
    config& join_peer(std::string_view peer_addr) & {
        detail::check(qkv_config_add_join_peer(p_, detail::c_text(peer_addr, "peer_addr").c_str()));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& join_peer(std::string_view peer_addr) && { return std::move(join_peer(peer_addr)); }
    /// When joining, stay a non-voting learner.
    config& join_as_learner(bool learner = true) & {
        detail::check(qkv_config_set_join_as_learner(p_, learner));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& join_as_learner(bool learner = true) && { return std::move(join_as_learner(learner)); }
    /// Serves etcd's v3 gRPC API on `client_addr` (host:port; port 0 picks one).
    config& client_addr(std::string_view addr) & {
        detail::check(qkv_config_set_client_addr(p_, detail::c_text(addr, "client_addr").c_str()));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& client_addr(std::string_view addr) && { return std::move(client_addr(addr)); }
    /// Removes a client address set before (no client port).
    config& no_client_addr() & {
        detail::check(qkv_config_set_client_addr(p_, nullptr));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& no_client_addr() && { return std::move(no_client_addr()); }
    /// Raft heartbeat interval and minimum election timeout (defaults 200 ms and 1000 ms;
    /// the election timeout must exceed the heartbeat, checked at start).
    config& timeouts(std::chrono::milliseconds heartbeat, std::chrono::milliseconds election) & {
        detail::check(qkv_config_set_timeouts(p_, detail::millis(heartbeat), detail::millis(election)));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& timeouts(std::chrono::milliseconds heartbeat, std::chrono::milliseconds election) && {
        return std::move(timeouts(heartbeat, election));
    }
    /// How long a request may wait for a leader, a commit or a forward (default 5 s).
    config& request_timeout(std::chrono::milliseconds timeout) & {
        detail::check(qkv_config_set_request_timeout_ms(p_, detail::millis(timeout)));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& request_timeout(std::chrono::milliseconds timeout) && { return std::move(request_timeout(timeout)); }
    /// Raft log compaction: snapshot every `threshold_entries` (default 10000), keeping
    /// `logs_to_keep` entries behind it (default 5000).
    config& snapshot_threshold(uint64_t threshold_entries, uint64_t logs_to_keep) & {
        detail::check(qkv_config_set_snapshot_threshold(p_, threshold_entries, logs_to_keep));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& snapshot_threshold(uint64_t threshold_entries, uint64_t logs_to_keep) && {
        return std::move(snapshot_threshold(threshold_entries, logs_to_keep));
    }
    /// Request limits: largest encoded request (default 1.5 MiB), most operations per
    /// transaction list (default 128).
    config& limits(size_t max_request_bytes, size_t max_txn_ops) & {
        detail::check(qkv_config_set_limits(p_, max_request_bytes, max_txn_ops));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& limits(size_t max_request_bytes, size_t max_txn_ops) && {
        return std::move(limits(max_request_bytes, max_txn_ops));
    }
    /// Mixed into member and cluster ids (etcd's --initial-cluster-token).
    config& cluster_token(std::string_view token) & {
        detail::check(qkv_config_set_cluster_token(p_, detail::c_text(token, "token").c_str()));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& cluster_token(std::string_view token) && { return std::move(cluster_token(token)); }
    /// TLS on the peer port: PEM certificate, key and trusted CA files (read at start).
    config& peer_tls(std::string_view cert_file, std::string_view key_file, std::string_view trusted_ca_file,
                     bool client_cert_auth = false) & {
        detail::check(qkv_config_set_peer_tls(p_, detail::c_text(cert_file, "cert_file").c_str(),
                                              detail::c_text(key_file, "key_file").c_str(),
                                              detail::c_text(trusted_ca_file, "trusted_ca_file").c_str(),
                                              client_cert_auth));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& peer_tls(std::string_view cert_file, std::string_view key_file, std::string_view trusted_ca_file,
                      bool client_cert_auth = false) && {
        return std::move(peer_tls(cert_file, key_file, trusted_ca_file, client_cert_auth));
    }
    /// TLS on the client port: certificate and key, and optionally the CA client
    /// certificates must chain to (required with `client_cert_auth`).
    config& client_tls(std::string_view cert_file, std::string_view key_file,
                       std::optional<std::string_view> trusted_ca_file = std::nullopt,
                       bool client_cert_auth = false) & {
        std::optional<std::string> ca;
        if (trusted_ca_file) ca = detail::c_text(*trusted_ca_file, "trusted_ca_file");
        detail::check(qkv_config_set_client_tls(p_, detail::c_text(cert_file, "cert_file").c_str(),
                                                detail::c_text(key_file, "key_file").c_str(),
                                                ca ? ca->c_str() : nullptr, client_cert_auth));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& client_tls(std::string_view cert_file, std::string_view key_file,
                        std::optional<std::string_view> trusted_ca_file = std::nullopt,
                        bool client_cert_auth = false) && {
        return std::move(client_tls(cert_file, key_file, trusted_ca_file, client_cert_auth));
    }
    /// Puts the node on `network`, shared with other nodes of this process.
    /// Throws error(QKV_NULL_PARAMETER) for a moved-from network.
    config& local_network(const quorumkv::local_network& network) & {
        if (!network.handle()) throw error(QKV_NULL_PARAMETER, "local network is empty (moved from)");
        detail::check(qkv_config_set_local_network(p_, network.handle()));
        return *this;
    }
    /// The same on a temporary config (returned as an rvalue, so it can be moved on).
    config&& local_network(const quorumkv::local_network& network) && { return std::move(local_network(network)); }

    using unique_handle::handle;
};

/// Which branch of a transaction an operation goes to.
enum class branch : int32_t { success = QKV_TXN_SUCCESS, failure = QKV_TXN_FAILURE };
/// What a compare looks at.
enum class compare_target : int32_t {
    version = QKV_COMPARE_VERSION,
    create = QKV_COMPARE_CREATE,
    mod = QKV_COMPARE_MOD,
    value = QKV_COMPARE_VALUE,
    lease = QKV_COMPARE_LEASE,
};
/// How a compare compares.
enum class compare_op : int32_t {
    equal = QKV_EQUAL,
    not_equal = QKV_NOT_EQUAL,
    less = QKV_LESS,
    greater = QKV_GREATER,
};

/// A transaction under construction (etcd TxnRequest): compares, then the operations of
/// the success or the failure branch. Fluent (each adder returns *this and copies its
/// arguments); run it with node::commit, as often as wanted. Move-only. Not for two threads
/// at once while being built. Adders throw error(QKV_INVALID_ARGUMENT) for bad enums.
class txn : private detail::unique_handle<qkv_txn, qkv_txn_free> {
public:
    /// An empty transaction. Throws error only if the library cannot allocate it.
    txn() { detail::check(qkv_txn_new(&p_)); }
    // Moves as detail::unique_handle.

    /// Compares `key`'s version, create/mod revision or lease with `number`.
    txn& compare(std::string_view key, compare_target target, compare_op op, int64_t number) {
        return compare_range(key, {}, target, op, number, {});
    }
    /// Compares `key`'s value with `value` (false on an absent key).
    txn& compare_value(std::string_view key, compare_op op, std::string_view value) {
        return compare_range(key, {}, compare_target::value, op, 0, value);
    }
    /// The general compare: every key in [key, range_end) (just `key` when range_end is
    /// empty) must satisfy it; `number` or `value` is used depending on `target`.
    txn& compare_range(std::string_view key, std::string_view range_end, compare_target target, compare_op op,
                       int64_t number, std::string_view value = {}) {
        detail::check(qkv_txn_compare(p_, detail::ptr(key), key.size(), detail::ptr(range_end), range_end.size(),
                                      static_cast<int32_t>(target), static_cast<int32_t>(op), number,
                                      detail::ptr(value), value.size()));
        return *this;
    }
    /// Adds a put to branch `b`.
    txn& put(branch b, std::string_view key, std::string_view value, const put_options& options = {}) {
        qkv_put_options o = detail::to_c(options);
        detail::check(qkv_txn_put(p_, static_cast<int32_t>(b), detail::ptr(key), key.size(), detail::ptr(value),
                                  value.size(), &o));
        return *this;
    }
    /// Adds a range read to branch `b` (key range and options as in node::range).
    txn& range(branch b, std::string_view key, std::string_view range_end = {}, const range_options& options = {}) {
        qkv_range_options o = detail::to_c(options);
        detail::check(qkv_txn_range(p_, static_cast<int32_t>(b), detail::ptr(key), key.size(),
                                    detail::ptr(range_end), range_end.size(), &o));
        return *this;
    }
    /// Adds a delete to branch `b` (key range and options as in node::delete_range).
    txn& delete_range(branch b, std::string_view key, std::string_view range_end = {},
                      const delete_options& options = {}) {
        qkv_delete_options o = detail::to_c(options);
        detail::check(qkv_txn_delete_range(p_, static_cast<int32_t>(b), detail::ptr(key), key.size(),
                                           detail::ptr(range_end), range_end.size(), &o));
        return *this;
    }
    /// Adds a copy of `inner` as a nested transaction to branch `b` (`inner` may change
    /// or go afterwards). Throws error(QKV_INVALID_ARGUMENT) when `inner` is this txn.
    txn& nest(branch b, const txn& inner) {
        detail::check(qkv_txn_nest(p_, static_cast<int32_t>(b), inner.p_));
        return *this;
    }

    using unique_handle::handle;
};

// ---------------------------------------------------------------------------------------
// Keep-alive

/// A background keep-alive of a lease (renewal every third of its TTL on the library's
/// threads) until destroyed or reset, the lease's revocation, or the node's stop.
/// Made by node::lease_keep_alive. Move-only; thread-safe.
class keepalive : private detail::unique_handle<qkv_keepalive, qkv_keepalive_free> {
public:
    // Lifetime as detail::unique_handle: empty default, from a handle, move.
    using unique_handle::unique_handle;
    /// Stops renewing (the lease then expires after its TTL); the object becomes empty.
    /// Never throws.
    using unique_handle::reset;
    /// Whether it still owns a keep-alive. Never throws.
    using unique_handle::operator bool;
};

// ---------------------------------------------------------------------------------------
// Node

/// A node running in this process (qkv_node). Move-only; the destructor stops it (a
/// leader first hands leadership over) and frees it. Every method may be called from any
/// thread concurrently (and from watch callbacks); the destructor, reset() and move
/// assignment must be the last use. Blocking methods wait on the calling thread.
class node : private detail::unique_handle<qkv_node, qkv_node_free> {
public:
    /// An empty node (no handle). Never throws.
    node() noexcept = default;
    /// Starts a node from `cfg` (copied; `cfg` may go right after): opens the data dir,
    /// bootstraps or joins, and returns once it serves requests. Throws error
    /// (QKV_INVALID_CONFIG, QKV_DATA_DIR_LOCKED, QKV_TRANSPORT, QKV_CLUSTER_MISMATCH, ...).
    explicit node(const config& cfg) { detail::check(qkv_node_start(cfg.handle(), &p_)); }
    // Moves as detail::unique_handle.

    /// Stops (if running) and frees the node now; the object becomes empty. Watches and
    /// keep-alives made from it stay valid (they report QKV_STOPPED). Never throws.
    using unique_handle::reset;
    /// Stops the node (idempotent) but keeps the handle: later calls throw QKV_STOPPED,
    /// and the same config may be started again. Blocking. Throws error.
    void stop() const { detail::check(qkv_node_stop(p_)); }
    using unique_handle::operator bool;
    using unique_handle::handle;

    /// This member's id (stable across restarts); 0 when empty. Never throws.
    uint64_t id() const noexcept { return qkv_node_id(p_); }
    /// This node's name ("" when empty). Throws std::bad_alloc only.
    std::string name() const {
        const char* n = qkv_node_name(p_);
        return n ? std::string(n) : std::string();
    }
    /// The bound client address (host:port), "" when the node serves no client port.
    /// Throws std::bad_alloc only.
    std::string client_addr() const {
        return detail::copy_text([this](char* buf, size_t len) { return qkv_node_client_addr(p_, buf, len); });
    }
    /// The detail text of the last failed call on this handle from any thread (the
    /// exceptions carry the calling thread's own detail already). Throws std::bad_alloc only.
    std::string last_error() const {
        return detail::copy_text([this](char* buf, size_t len) { return qkv_node_last_error(p_, buf, len); });
    }
    /// The node's status (local, no network round). Throws error (QKV_STOPPED).
    node_status status() const {
        qkv_status s{};
        s.size = sizeof s;
        detail::check(qkv_node_status(p_, &s));
        return node_status{s.id, s.cluster_id, s.term, s.leader, s.commit_index, s.applied_index,
                           s.last_log_index, s.revision, s.compact_revision, s.db_size_bytes, s.fsync_count,
                           s.watch_count, s.leader_changes, s.is_leader, s.is_learner, s.has_leader, s.fatal};
    }
    /// The leader this node knows of (local), std::nullopt when none. Throws error
    /// (QKV_STOPPED).
    std::optional<uint64_t> leader() const {
        uint64_t id = 0;
        qkv_result rc = qkv_node_leader(p_, &id);
        if (rc == QKV_NO_LEADER) return std::nullopt;
        detail::check(rc);
        return id;
    }
    /// The members as this node knows them (local), ordered by id. Throws error.
    std::vector<member> members() const {
        qkv_members* m = nullptr;
        detail::check(qkv_node_members(p_, &m));
        detail::unique_handle<qkv_members, qkv_members_free> guard(m);
        std::vector<member> out;
        for (size_t i = 0, n = qkv_members_len(m); i < n; i++) {
            qkv_member c{};
            detail::check(qkv_members_get(m, i, &c));
            auto text = [](const char* s) { return s ? std::string(s) : std::string(); };
            out.push_back(member{c.id, text(c.name), text(c.peer_addr), text(c.client_addr), c.is_learner});
        }
        return out;
    }
    /// Adds a member that will listen on `peer_addr` (start it afterwards with a config
    /// that joins); `name` may be "". Returns its id. Blocking. Throws error
    /// (QKV_PEER_ADDR_EXISTS, QKV_MEMBERSHIP_CHANGE, QKV_NO_LEADER, QKV_TIMEOUT, ...).
    uint64_t add_member(std::string_view name, std::string_view peer_addr, bool learner = false) const {
        uint64_t id = 0;
        detail::check(qkv_node_add_member(p_, detail::c_text(name, "name").c_str(),
                                          detail::c_text(peer_addr, "peer_addr").c_str(), learner, &id));
        return id;
    }
    /// Removes member `id` (may be this node). Blocking. Throws error (QKV_MEMBER_NOT_FOUND, ...).
    void remove_member(uint64_t id) const { detail::check(qkv_node_remove_member(p_, id)); }
    /// Promotes learner `id` to a voter. Blocking. Throws error (QKV_MEMBER_NOT_LEARNER, ...).
    void promote_member(uint64_t id) const { detail::check(qkv_node_promote_member(p_, id)); }
    /// Hands leadership to voter `target`. Blocking. Throws error
    /// (QKV_BAD_LEADER_TRANSFEREE, QKV_MEMBER_NOT_FOUND, ...).
    void move_leader(uint64_t target) const { detail::check(qkv_node_move_leader(p_, target)); }

    /// Writes `value` at `key`, committed through Raft before it returns. Blocking. Throws
    /// error (QKV_EMPTY_KEY, QKV_REQUEST_TOO_LARGE, QKV_LEASE_NOT_FOUND, QKV_KEY_NOT_FOUND,
    /// QKV_VALUE_PROVIDED, QKV_LEASE_PROVIDED, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED, ...).
    put_response put(std::string_view key, std::string_view value, const put_options& options = {}) const {
        qkv_put_options o = detail::to_c(options);
        qkv_header h{};
        qkv_kvs* prev = nullptr;
        detail::check(qkv_put(p_, detail::ptr(key), key.size(), detail::ptr(value), value.size(), &o, &h,
                              options.prev_kv ? &prev : nullptr));
        kvs owned(prev);
        put_response out;
        out.header = detail::to_header(h);
        if (!owned.empty()) out.prev_kv = owned[0];
        return out;
    }
    /// Reads one key (`prefix` and `limit` do not apply); std::nullopt when absent. Use
    /// range() for the response header. Blocking. Throws error (QKV_EMPTY_KEY,
    /// QKV_COMPACTED, QKV_FUTURE_REVISION, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED, ...).
    std::optional<key_value> get(std::string_view key, const range_options& options = {}) const {
        qkv_range_options o = detail::to_c(options);
        qkv_kvs* r = nullptr;
        detail::check(qkv_get(p_, detail::ptr(key), key.size(), &o, &r));
        kvs owned(r);
        if (owned.empty()) return std::nullopt;
        return owned[0];
    }
    /// The value of one key as a library buffer; std::nullopt when absent. Blocking.
    /// Throws error (QKV_EMPTY_KEY, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED, ...).
    std::optional<bytes> get_value(std::string_view key, bool serializable = false) const {
        qkv_bytes b{nullptr, 0};
        qkv_result rc = qkv_get_value(p_, detail::ptr(key), key.size(), serializable, &b);
        if (rc == QKV_KEY_NOT_FOUND) return std::nullopt;
        detail::check(rc);
        return bytes(b);
    }
    /// Reads [key, range_end): empty range_end: `key` alone; from_key: every key >= key;
    /// options.prefix: every key starting with `key` (empty key: all). Returns the owned
    /// list with its header, count and more. Blocking. Throws error as get().
    kvs range(std::string_view key, std::string_view range_end = {}, const range_options& options = {}) const {
        qkv_range_options o = detail::to_c(options);
        qkv_kvs* r = nullptr;
        detail::check(qkv_range(p_, detail::ptr(key), key.size(), detail::ptr(range_end), range_end.size(), &o, &r));
        return kvs(r);
    }
    /// Deletes [key, range_end) (as in range) in one revision. Blocking. Throws error
    /// (QKV_EMPTY_KEY, QKV_REQUEST_TOO_LARGE, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED, ...).
    delete_response delete_range(std::string_view key, std::string_view range_end = {},
                                 const delete_options& options = {}) const {
        qkv_delete_options o = detail::to_c(options);
        int64_t deleted = 0;
        qkv_header h{};
        qkv_kvs* prev = nullptr;
        detail::check(qkv_delete_range(p_, detail::ptr(key), key.size(), detail::ptr(range_end), range_end.size(),
                                       &o, &deleted, &h, options.prev_kv ? &prev : nullptr));
        delete_response out;
        out.header = detail::to_header(h);
        out.deleted = deleted;
        out.prev_kvs = kvs(prev);
        return out;
    }
    /// Compacts the history below `revision`. Blocking. Throws error (QKV_COMPACTED,
    /// QKV_FUTURE_REVISION, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED).
    response_header compact(int64_t revision) const {
        qkv_header h{};
        detail::check(qkv_compact(p_, revision, &h));
        return detail::to_header(h);
    }
    /// Runs `t` atomically; returns the owned result. Blocking. Throws error
    /// (QKV_EMPTY_KEY, QKV_TOO_MANY_OPS, QKV_DUPLICATE_KEY, QKV_REQUEST_TOO_LARGE,
    /// QKV_COMPACTED, QKV_LEASE_NOT_FOUND, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED, ...).
    txn_result commit(const txn& t) const {
        qkv_txn_result* r = nullptr;
        detail::check(qkv_txn_commit(p_, t.handle(), &r));
        return txn_result(r);
    }

    /// Grants a lease of `ttl` (raised to the cluster's minimum) with id `id` (0: the
    /// leader picks). Blocking. Throws error (QKV_LEASE_EXISTS, QKV_LEASE_TTL_TOO_LARGE, ...).
    lease_grant_response lease_grant(std::chrono::seconds ttl, int64_t id = 0) const {
        lease_grant_response out;
        qkv_header h{};
        detail::check(qkv_lease_grant(p_, static_cast<int64_t>(ttl.count()), id, &out.id, &out.ttl, &h));
        out.header = detail::to_header(h);
        return out;
    }
    /// Revokes lease `id`, deleting its keys in one revision. Blocking. Throws error
    /// (QKV_LEASE_NOT_FOUND, ...).
    response_header lease_revoke(int64_t id) const {
        qkv_header h{};
        detail::check(qkv_lease_revoke(p_, id, &h));
        return detail::to_header(h);
    }
    /// Renews lease `id` once; returns the renewed TTL in seconds. Blocking. Throws error
    /// (QKV_LEASE_NOT_FOUND, ...).
    int64_t lease_keep_alive_once(int64_t id) const {
        int64_t ttl = 0;
        detail::check(qkv_lease_keep_alive_once(p_, id, &ttl));
        return ttl;
    }
    /// Keeps lease `id` alive in the background while the returned object lives. Throws
    /// error (QKV_LEASE_NOT_FOUND at once, QKV_NO_LEADER, QKV_TIMEOUT, QKV_STOPPED).
    keepalive lease_keep_alive(int64_t id) const {
        qkv_keepalive* k = nullptr;
        detail::check(qkv_lease_keep_alive_start(p_, id, &k));
        return keepalive(k);
    }
    /// Lease `id`'s remaining and granted TTL (ttl -1 when it does not exist), with its
    /// keys when `with_keys`. Blocking. Throws error (QKV_NO_LEADER, QKV_TIMEOUT, ...).
    lease_ttl_response lease_time_to_live(int64_t id, bool with_keys = false) const {
        qkv_lease_info info{};
        qkv_keys* k = nullptr;
        detail::check(qkv_lease_time_to_live(p_, id, &info, with_keys ? &k : nullptr));
        lease_ttl_response out;
        out.attached_keys = keys(k);
        out.id = info.id;
        out.ttl = info.ttl;
        out.granted_ttl = info.granted_ttl;
        out.header = detail::to_header(info.header);
        return out;
    }
    /// The ids of every lease, ascending (local). Throws error (QKV_STOPPED).
    std::vector<int64_t> lease_list() const {
        size_t count = 0;
        detail::check(qkv_lease_list(p_, nullptr, 0, &count));
        std::vector<int64_t> ids;
        for (;;) {
            ids.resize(count);
            size_t capacity = ids.size();
            detail::check(qkv_lease_list(p_, capacity ? ids.data() : nullptr, capacity, &count));
            if (count <= capacity) {
                ids.resize(count);
                return ids;
            }
        }
    }
};

// ---------------------------------------------------------------------------------------
// Watch

/// Called with each response of a callback watch (events borrowed for the call only).
using event_callback = std::function<void(events_view)>;
/// Called once when a callback watch ends by itself: error code QKV_WATCH_CANCELED (after
/// cancel()), QKV_COMPACTED (compact_revision() says where to restart) or QKV_STOPPED.
/// Not called when the watch object is destroyed first.
using end_callback = std::function<void(const error&)>;

namespace detail {
struct watch_state {
    event_callback on_events;
    end_callback on_end;
    bool free_after_call = false;  // only touched on the watch's own thread
};

// The callback state whose call runs on this thread, if any.
inline watch_state*& running_watch_state() noexcept {
    thread_local watch_state* state = nullptr;
    return state;
}

// noexcept: an exception escaping a callback calls std::terminate (it must never
// unwind into the library).
inline void watch_trampoline(void* userdata, qkv_result status, const qkv_events* evs,
                             int64_t compact_revision) noexcept {
    auto* s = static_cast<watch_state*>(userdata);
    watch_state*& running = running_watch_state();
    watch_state* outer = running;
    running = s;
    if (status == QKV_OK) {
        if (s->on_events) s->on_events(events_view(evs));
    } else if (s->on_end) {
        s->on_end(error(status, std::string(), compact_revision));
    }
    running = outer;
    if (s->free_after_call) delete s;  // the watch was destroyed from its own callback
}
}  // namespace detail

/// A watch of a key range on a node (qkv_watch), by pull (next) or by callback. Move-only.
/// next(), cancel(), compact_revision() may be called from any thread; the destructor,
/// reset() and move assignment must be the last use. A watch may outlive its node (it
/// then reports QKV_STOPPED).
class watch : private detail::unique_handle<qkv_watch, qkv_watch_free> {
public:
    /// An empty watch. Never throws.
    watch() noexcept = default;
    /// A pulled watch of [key, range_end) (as in node::range; options.prefix: every key
    /// starting with `key`); responses queue (bounded) from now and are read with next().
    /// Throws error (QKV_EMPTY_KEY, QKV_COMPACTED for a start revision below the
    /// compaction point, QKV_STOPPED, ...).
    watch(const node& n, std::string_view key, std::string_view range_end = {}, const watch_options& options = {}) {
        qkv_watch_options o = detail::to_c(options);
        detail::check(qkv_watch_new(n.handle(), detail::ptr(key), key.size(), detail::ptr(range_end),
                                    range_end.size(), &o, &p_));
    }
    /// A callback watch: `on_events` gets each response and `on_end` (optional) the end,
    /// both on the watch's own library thread (`qkv-watch`), one call at a time, in
    /// revision order. The watch owns both functions until it is destroyed, so only what
    /// they capture must stay valid that long. They may call any node method and may
    /// destroy this watch object; they must not throw (std::terminate). While one runs,
    /// later responses wait. Throws error as the pull constructor.
    watch(const node& n, std::string_view key, std::string_view range_end, const watch_options& options,
          event_callback on_events, end_callback on_end = {})
        : state_(new detail::watch_state{std::move(on_events), std::move(on_end), false}) {
        qkv_watch_options o = detail::to_c(options);
        detail::check(qkv_watch_start(n.handle(), detail::ptr(key), key.size(), detail::ptr(range_end),
                                      range_end.size(), &o, detail::watch_trampoline, state_.get(), &p_));
    }
    /// Takes `o`'s handle and callbacks; `o` becomes empty. Never throws.
    watch(watch&& o) noexcept = default;
    /// Frees the current watch (as reset()) and takes `o`'s; `o` becomes empty. Never throws.
    watch& operator=(watch&& o) noexcept {
        if (this != &o) {
            reset();
            unique_handle::operator=(std::move(o));  // this is empty now: only takes o's
            state_ = std::move(o.state_);
        }
        return *this;
    }
    /// Frees the watch, if any (see reset()). Never throws.
    ~watch() { reset(); }

    /// Cancels and frees the watch; the object becomes empty. For a callback watch, waits
    /// for a callback running on another thread; no call follows. Called from the watch's
    /// own callback, it returns at once and the functions are freed when that call
    /// returns. Never throws.
    void reset() noexcept {
        qkv_watch* w = unique_handle::release();
        detail::watch_state* s = state_.release();
        if (s != nullptr && detail::running_watch_state() == s) {
            s->free_after_call = true;  // the trampoline frees it after the callback returns
            qkv_watch_free(w);
        } else {
            qkv_watch_free(w);
            delete s;
        }
    }
    /// Pulled watches: waits up to `timeout` (0: no wait) for the next response;
    /// std::nullopt when none came in time. Thread-safe (concurrent calls take turns).
    /// Throws error when the watch has ended (again on every later call):
    /// QKV_WATCH_CANCELED (after cancel(), once queued responses were read),
    /// QKV_COMPACTED (error::compact_revision() says where history starts now),
    /// QKV_STOPPED; and QKV_INVALID_ARGUMENT for a callback watch.
    std::optional<events> next(std::chrono::milliseconds timeout) const {
        auto ms = timeout.count() <= 0 ? 0 : timeout.count();
        auto max = static_cast<decltype(ms)>(std::numeric_limits<uint32_t>::max());
        qkv_events* e = nullptr;
        qkv_result rc = qkv_watch_next(p_, static_cast<uint32_t>(ms < max ? ms : max), &e);
        if (rc == QKV_TIMEOUT) return std::nullopt;
        if (rc != QKV_OK) throw error(rc, detail::last_error_text(), qkv_watch_compact_revision(p_));
        return events(e);
    }
    /// Cancels: queued responses are still delivered, then the watch ends with
    /// QKV_WATCH_CANCELED. Idempotent; never blocks; thread-safe. Throws error
    /// (QKV_NULL_PARAMETER when empty).
    void cancel() const { detail::check(qkv_watch_cancel(p_)); }
    /// The compaction revision once the watch ended with QKV_COMPACTED, else 0. Never throws.
    int64_t compact_revision() const noexcept { return qkv_watch_compact_revision(p_); }
    /// The detail of the watch's last failure. Throws std::bad_alloc only.
    std::string last_error() const {
        return detail::copy_text([this](char* buf, size_t len) { return qkv_watch_last_error(p_, buf, len); });
    }
    using unique_handle::operator bool;
    using unique_handle::handle;

private:
    std::unique_ptr<detail::watch_state> state_;  // callback watches only
};

}  // namespace quorumkv

#endif  // QUORUMKV_HPP
