// Tests of bindings/cpp/quorumkv.hpp on real nodes (loopback, real data dirs): one node
// exercising every wrapper (config, node, put/get/range/delete/compact, txn, watches by
// pull and by callback, leases, membership, error paths, moved-from objects), then a
// 3-node cluster (move leader, leader stop, new leader, keys survive, restart) and a
// learner joining a second cluster. Built with -fsanitize=address,undefined by
// bindings/cpp/run. Usage: test_quorumkv [DATA_DIR] (default: a fresh mkdtemp dir).
#include "quorumkv.hpp"

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace q = quorumkv;
using namespace std::chrono_literals;

static int checks = 0, failures = 0;

#define CHECK(cond)                                                                        \
    do {                                                                                   \
        checks++;                                                                          \
        if (!(cond)) {                                                                     \
            std::fprintf(stderr, "%s:%d: CHECK(%s) failed\n", __FILE__, __LINE__, #cond);  \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

// Runs `stmt`, which must throw quorumkv::error with `expected` code.
#define THROWS(stmt, expected)                                                             \
    do {                                                                                   \
        checks++;                                                                          \
        const char* got_ = "no exception";                                                 \
        std::string what_;                                                                 \
        bool ok_ = false;                                                                  \
        try {                                                                              \
            stmt;                                                                          \
        } catch (const q::error& e_) {                                                     \
            ok_ = e_.code() == (expected);                                                 \
            got_ = "wrong code";                                                           \
            what_ = e_.what();                                                             \
        } catch (const std::exception& e_) {                                               \
            got_ = "another exception";                                                    \
            what_ = e_.what();                                                             \
        }                                                                                  \
        if (!ok_) {                                                                        \
            std::fprintf(stderr, "%s:%d: %s did not throw %s (%s: %s)\n", __FILE__, __LINE__, \
                         #stmt, #expected, got_, what_.c_str());                           \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

// Runs a block, counting an unexpected exception as a failure instead of ending the run.
#define SECTION(name, body)                                                                \
    do {                                                                                   \
        std::printf("-- %s\n", name);                                                      \
        std::fflush(stdout);                                                               \
        try {                                                                              \
            body;                                                                          \
        } catch (const std::exception& e_) {                                               \
            std::fprintf(stderr, "section %s: unexpected exception: %s\n", name, e_.what()); \
            checks++;                                                                      \
            failures++;                                                                    \
        }                                                                                  \
    } while (0)

template <class Pred>
static bool wait_until(Pred pred, std::chrono::milliseconds timeout = 5000ms) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (pred()) return true;
        std::this_thread::sleep_for(10ms);
    }
    return pred();
}

static std::string base_dir;
static const char* kPeer = "127.0.0.1:27511";

static q::config node_config(const std::string& name, const char* peer) {
    return q::config(name, base_dir + "/" + name, peer).timeouts(50ms, 300ms);
}

static q::range_options prefix_opts() {
    q::range_options o;
    o.prefix = true;
    return o;
}

// ---------------------------------------------------------------------------------------

static void test_basics() {
    CHECK(!q::version().empty());
    CHECK(q::abi_version() == QKV_ABI_VERSION);
    CHECK(q::result_message(QKV_COMPACTED) == "etcdserver: mvcc: required revision has been compacted");

    q::error e(QKV_EMPTY_KEY, "some detail");
    CHECK(e.code() == QKV_EMPTY_KEY && e.detail() == "some detail" && e.compact_revision() == 0);
    CHECK(std::string(e.what()) == "etcdserver: key is not provided: some detail");
    q::error copy = e;  // copying shares the detail
    CHECK(copy.code() == QKV_EMPTY_KEY && copy.detail() == "some detail");
    const std::runtime_error& base = e;
    CHECK(std::string(base.what()).find("key is not provided") != std::string::npos);

    // config errors
    THROWS(q::config("", base_dir + "/x", kPeer), QKV_INVALID_ARGUMENT);
    THROWS(q::config("\xff\xfe", base_dir + "/x", kPeer), QKV_INVALID_ARGUMENT);
    THROWS(q::config(std::string_view("a\0b", 3), base_dir + "/x", kPeer), QKV_INVALID_ARGUMENT);
    q::config c("x", base_dir + "/x", "127.0.0.1:27519");
    THROWS(c.timeouts(0ms, 300ms), QKV_INVALID_ARGUMENT);
    THROWS(c.request_timeout(0ms), QKV_INVALID_ARGUMENT);
    THROWS(c.snapshot_threshold(0, 10), QKV_INVALID_ARGUMENT);
    THROWS(c.limits(0, 10), QKV_INVALID_ARGUMENT);
    // an invalid combination is refused at start, with detail text
    c.timeouts(500ms, 100ms);
    try {
        q::node n(c);
        CHECK(false);
    } catch (const q::error& err) {
        CHECK(err.code() == QKV_INVALID_CONFIG);
        CHECK(!err.detail().empty());
        CHECK(std::string(err.what()).find(err.detail()) != std::string::npos);
    }
    // every setter works on a valid config, fluently, lvalue and rvalue
    c.initial_member("x", "127.0.0.1:27519").join_peer("127.0.0.1:27518").join_as_learner(false);
    c.client_addr("127.0.0.1:0").no_client_addr().cluster_token("t").request_timeout(1s);
    c.peer_tls("/nonexistent/cert.pem", "/nonexistent/key.pem", "/nonexistent/ca.pem", true);
    c.client_tls("/nonexistent/cert.pem", "/nonexistent/key.pem");
    c.client_tls("/nonexistent/cert.pem", "/nonexistent/key.pem", std::string_view("/nonexistent/ca.pem"), true);
    q::config moved = q::config("y", base_dir + "/y", "127.0.0.1:27519").timeouts(50ms, 300ms).limits(1 << 20, 16);
    CHECK(moved.handle() != nullptr);
    q::config other = std::move(moved);
    CHECK(moved.handle() == nullptr && other.handle() != nullptr);
    THROWS(moved.timeouts(50ms, 300ms), QKV_NULL_PARAMETER);
    THROWS(q::node{moved}, QKV_NULL_PARAMETER);
    moved = std::move(other);  // assigning to a moved-from object works
    CHECK(moved.handle() != nullptr && other.handle() == nullptr);
}

static void test_node_info(const q::node& n) {
    q::node_status st = n.status();
    CHECK(st.is_leader && st.leader == st.id && st.id == n.id() && st.term >= 1);
    CHECK(st.applied_index > 0 && st.db_size_bytes > 0 && !st.fatal && !st.is_learner && st.has_leader);
    CHECK(n.name() == "c1");
    CHECK(n.leader() && *n.leader() == n.id());
    std::vector<q::member> ms = n.members();
    CHECK(ms.size() == 1);
    if (!ms.empty()) {
        CHECK(ms[0].id == n.id() && ms[0].name == "c1" && ms[0].peer_addr == kPeer && !ms[0].is_learner);
        CHECK(!ms[0].client_addr.empty());
    }
    std::string addr = n.client_addr();
    CHECK(addr.rfind("127.0.0.1:", 0) == 0 && addr != "127.0.0.1:0");
}

static void test_crud(const q::node& n) {
    q::put_response p = n.put("app/a", "1");
    CHECK(p.header.revision >= 2 && p.header.cluster_id != 0 && p.header.member_id == n.id());
    CHECK(p.header.raft_term >= 1 && !p.prev_kv);
    const int64_t rev_a1 = p.header.revision;
    n.put("app/b", "2");
    n.put("app/c", "3");
    n.put("other", "x");

    // prev_kv
    q::put_options po;
    po.prev_kv = true;
    p = n.put("app/a", "11", po);
    CHECK(p.prev_kv && p.prev_kv->value == "1" && p.prev_kv->key == "app/a");
    p = n.put("app/new", "n", po);
    CHECK(!p.prev_kv);

    // binary keys and values (NUL bytes, not NUL-terminated)
    std::string bin_key("bin\0key", 7), bin_val("\0\1\2\0", 4);
    n.put(bin_key, bin_val);
    auto bin = n.get(bin_key);
    CHECK(bin && bin->key == bin_key && bin->value == bin_val);
    CHECK(!n.get(std::string_view("bin", 3)));

    // get
    auto kv = n.get("app/a");
    CHECK(kv && kv->key == "app/a" && kv->value == "11" && kv->version == 2);
    CHECK(kv && kv->create_revision == rev_a1 && kv->mod_revision > rev_a1 && kv->lease == 0);
    q::range_options ser;
    ser.serializable = true;
    CHECK(!n.get("missing", ser));
    CHECK(n.get("app/b", ser) && n.get("app/b", ser)->value == "2");

    // get_value: bytes owned by the library buffer
    std::optional<q::bytes> v = n.get_value("app/b");
    CHECK(v && v->size() == 1 && v->view() == "2" && v->str() == "2" && v->data() != nullptr);
    CHECK(!n.get_value("missing"));
    CHECK(n.get_value(bin_key, true) && n.get_value(bin_key, true)->view() == bin_val);

    // range: prefix, limit, sort, count, more, header
    q::range_options ro = prefix_opts();
    ro.limit = 2;
    ro.order = q::sort_order::descend;
    ro.target = q::sort_target::key;
    q::kvs r = n.range("app/", {}, ro);
    CHECK(r.size() == 2 && r.more() && r.count() == 4);
    CHECK(r.size() == 2 && r[0].key == "app/new" && r[1].key == "app/c");
    CHECK(r.header().revision >= p.header.revision && r.header().member_id == n.id());
    THROWS(r[2], QKV_INVALID_ARGUMENT);
    std::vector<std::string> seen;
    for (const q::key_value& item : r) seen.push_back(item.key);
    CHECK((seen == std::vector<std::string>{"app/new", "app/c"}));
    CHECK(r.to_vector().size() == 2);
    qkv_kv raw = r.raw(1);
    CHECK(raw.key_len == 5 && std::memcmp(raw.key, "app/c", 5) == 0);

    // sort by value ascending, by mod revision
    q::range_options by_value = prefix_opts();
    by_value.order = q::sort_order::ascend;
    by_value.target = q::sort_target::value;
    r = n.range("app/", {}, by_value);
    CHECK(r.size() == 4 && r[0].value == "11" && r[3].value == "n");
    by_value.target = q::sort_target::mod;
    by_value.order = q::sort_order::descend;
    r = n.range("app/", {}, by_value);
    CHECK(r.size() == 4 && r[0].key == "app/new");
    by_value.target = q::sort_target::version;
    r = n.range("app/", {}, by_value);
    CHECK(r.size() == 4 && r[0].key == "app/a");
    by_value.target = q::sort_target::create;
    by_value.order = q::sort_order::ascend;
    r = n.range("app/", {}, by_value);
    CHECK(r.size() == 4 && r[0].key == "app/a");

    // count_only, keys_only with an explicit range end, from_key
    q::range_options co = prefix_opts();
    co.count_only = true;
    r = n.range("app/", {}, co);
    CHECK(r.size() == 0 && r.empty() && r.count() == 4);
    q::range_options ko;
    ko.keys_only = true;
    r = n.range("app/a", "app/c", ko);
    CHECK(r.size() == 2 && r[1].key == "app/b" && r[1].value.empty());
    r = n.range("app/c", q::from_key);
    CHECK(r.size() == 4);  // app/c, app/new, bin\0key, other
    r = n.range("", {}, prefix_opts());
    CHECK(r.size() == 6);

    // mod/create revision filters
    q::range_options mr = prefix_opts();
    mr.min_mod_revision = rev_a1 + 1;
    r = n.range("app/", {}, mr);
    CHECK(r.size() == 4);  // app/a was modified again
    mr.max_mod_revision = rev_a1 + 2;
    r = n.range("app/", {}, mr);
    CHECK(r.size() == 2);  // app/b, app/c
    q::range_options cr = prefix_opts();
    cr.min_create_revision = rev_a1;
    cr.max_create_revision = rev_a1;
    r = n.range("app/", {}, cr);
    CHECK(r.size() == 1 && r[0].key == "app/a");

    // a past revision; a future one
    q::range_options past;
    past.revision = rev_a1;
    kv = n.get("app/a", past);
    CHECK(kv && kv->value == "1");
    q::range_options future;
    future.revision = 1000000;
    THROWS(n.get("app/a", future), QKV_FUTURE_REVISION);

    // delete_range: one key, with prev_kv, by prefix
    q::delete_response d = n.delete_range("other");
    CHECK(d.deleted == 1 && d.header.revision > p.header.revision && d.prev_kvs.empty());
    CHECK(n.delete_range("other").deleted == 0);
    q::delete_options dopt;
    dopt.prefix = true;
    dopt.prev_kv = true;
    d = n.delete_range("app/", {}, dopt);
    CHECK(d.deleted == 4 && d.prev_kvs.size() == 4 && d.prev_kvs[0].key == "app/a");
    d = n.delete_range(bin_key, q::from_key);
    CHECK(d.deleted == 1);
}

static void test_txn(const q::node& n) {
    n.put("t/a", "11");
    n.put("t/b", "2");
    q::txn inner;
    inner.put(q::branch::success, "t/nested", "n");
    q::range_options pre = prefix_opts();
    q::txn t;
    t.compare_value("t/a", q::compare_op::equal, "11")
        .compare("t/a", q::compare_target::version, q::compare_op::equal, 1)
        .compare("t/a", q::compare_target::lease, q::compare_op::equal, 0)
        .compare("t/missing", q::compare_target::create, q::compare_op::equal, 0)
        .compare("t/b", q::compare_target::mod, q::compare_op::greater, 0)
        .compare_range("t/", "t0", q::compare_target::version, q::compare_op::greater, 0)
        .put(q::branch::success, "t/d", "4")
        .range(q::branch::success, "t/", {}, pre)
        .nest(q::branch::success, inner)
        .delete_range(q::branch::failure, "t/a");
    THROWS(t.nest(q::branch::success, t), QKV_INVALID_ARGUMENT);
    inner.put(q::branch::success, "t/ignored", "x");  // the nested copy is not affected

    q::txn_result res = n.commit(t);
    CHECK(res.succeeded() && res.size() == 3 && res.header().revision > 0);
    if (res.size() == 3) {
        q::txn_op_result put_op = res[0], range_op = res[1], nest_op = res[2];
        CHECK(put_op.type == q::op_type::put && put_op.header.revision == res.header().revision);
        CHECK(range_op.type == q::op_type::range && range_op.kvs.size() == 3);
        CHECK(range_op.kvs.size() == 3 && range_op.kvs[2].key == "t/d");
        CHECK(nest_op.type == q::op_type::txn && nest_op.nested.succeeded() && nest_op.nested.size() == 1);
        CHECK(nest_op.nested.size() == 1 && nest_op.nested[0].type == q::op_type::put);
    }
    int ops = 0;
    for (const q::txn_op_result& op : res) ops += op.type == q::op_type::txn ? 10 : 1;
    CHECK(ops == 12);
    THROWS(res[3], QKV_INVALID_ARGUMENT);
    CHECK(n.get("t/nested") && !n.get("t/ignored"));

    // committed again after t/a changed: the version compare fails, the failure branch runs
    n.put("t/a", "11");
    q::txn_result again = n.commit(t);
    CHECK(!again.succeeded() && again.size() == 1);
    if (again.size() == 1) CHECK(again[0].type == q::op_type::delete_range && again[0].deleted == 1);
    CHECK(!n.get("t/a"));

    // a key written twice is refused; too many ops; an empty key
    q::txn dup;
    dup.put(q::branch::success, "t/x", "1").put(q::branch::success, "t/x", "2");
    THROWS(n.commit(dup), QKV_DUPLICATE_KEY);
    q::txn many;
    for (int i = 0; i < 129; i++) many.put(q::branch::success, "t/m" + std::to_string(i), "v");
    THROWS(n.commit(many), QKV_TOO_MANY_OPS);
    q::txn empty_key;
    empty_key.put(q::branch::success, "", "v");
    THROWS(n.commit(empty_key), QKV_EMPTY_KEY);
    q::txn bad;
    THROWS(bad.compare("k", static_cast<q::compare_target>(99), q::compare_op::equal, 0), QKV_INVALID_ARGUMENT);
    THROWS(bad.compare("k", q::compare_target::version, static_cast<q::compare_op>(99), 0), QKV_INVALID_ARGUMENT);
    THROWS(bad.put(static_cast<q::branch>(5), "k", "v"), QKV_INVALID_ARGUMENT);

    // a read-only, failure-branch txn with a put's prev_kv and a delete's kvs
    q::put_options pkv;
    pkv.prev_kv = true;
    q::delete_options dkv;
    dkv.prev_kv = true;
    q::txn f;
    f.compare("t/b", q::compare_target::version, q::compare_op::less, 0)
        .put(q::branch::failure, "t/b", "3", pkv)
        .delete_range(q::branch::failure, "t/d", {}, dkv);
    res = n.commit(f);
    CHECK(!res.succeeded() && res.size() == 2);
    if (res.size() == 2) {
        CHECK(res[0].kvs.size() == 1 && res[0].kvs[0].value == "2");
        CHECK(res[1].deleted == 1 && res[1].kvs.size() == 1 && res[1].kvs[0].key == "t/d");
    }
    n.delete_range("t/", {}, [] { q::delete_options o; o.prefix = true; return o; }());
}

static void test_errors(const q::node& n) {
    // an empty key
    try {
        n.put("", "v");
        CHECK(false);
    } catch (const q::error& e) {
        CHECK(e.code() == QKV_EMPTY_KEY);
        CHECK(std::string(e.what()).find("etcdserver: key is not provided") == 0);
    }
    THROWS(n.get(""), QKV_EMPTY_KEY);
    THROWS(n.get_value(""), QKV_EMPTY_KEY);
    THROWS(n.delete_range(""), QKV_EMPTY_KEY);
    CHECK(n.put("k", "").header.revision > 0);  // an empty value is fine
    CHECK(n.get("k") && n.get("k")->value.empty());

    // an oversize value: refused, nothing lost
    std::string big(2 * 1024 * 1024, 'x');
    THROWS(n.put("k", big), QKV_REQUEST_TOO_LARGE);
    CHECK(n.get("k") && n.get("k")->value.empty());

    // ignore_value / ignore_lease rules
    q::put_options iv;
    iv.ignore_value = true;
    THROWS(n.put("absent", "", iv), QKV_KEY_NOT_FOUND);
    THROWS(n.put("k", "v", iv), QKV_VALUE_PROVIDED);
    q::put_options il;
    il.ignore_lease = true;
    il.lease = 42;
    THROWS(n.put("k", "v", il), QKV_LEASE_PROVIDED);

    // an unknown enum value: the detail names it, in the error and in node::last_error
    q::range_options bad;
    bad.order = static_cast<q::sort_order>(7);
    try {
        n.range("k", {}, bad);
        CHECK(false);
    } catch (const q::error& e) {
        CHECK(e.code() == QKV_INVALID_ARGUMENT);
        CHECK(e.detail().find("sort_order") != std::string::npos);
        CHECK(n.last_error() == e.detail());
    }

    // compaction: a compacted revision cannot be read, nor compacted again
    q::put_response p1 = n.put("cmp", "1");
    q::put_response p2 = n.put("cmp", "2");
    q::response_header h = n.compact(p2.header.revision);
    CHECK(h.revision >= p2.header.revision);
    CHECK(n.status().compact_revision == p2.header.revision);
    q::range_options old;
    old.revision = p1.header.revision;
    THROWS(n.get("cmp", old), QKV_COMPACTED);
    THROWS(n.range("cmp", {}, old), QKV_COMPACTED);
    THROWS(n.compact(p1.header.revision), QKV_COMPACTED);
    THROWS(n.compact(1000000), QKV_FUTURE_REVISION);
    q::txn t;
    t.range(q::branch::success, "cmp", {}, old);
    THROWS(n.commit(t), QKV_COMPACTED);

    // membership errors on a one-node cluster; a learner that is added and removed
    THROWS(n.remove_member(12345), QKV_MEMBER_NOT_FOUND);
    THROWS(n.promote_member(n.id()), QKV_MEMBER_NOT_LEARNER);
    try {
        n.move_leader(12345);
        CHECK(false);
    } catch (const q::error& e) {
        CHECK(e.code() == QKV_MEMBER_NOT_FOUND || e.code() == QKV_BAD_LEADER_TRANSFEREE);
    }
    THROWS(n.add_member("dup", kPeer, true), QKV_PEER_ADDR_EXISTS);
    THROWS(n.add_member(std::string_view("bad\0name", 8), "127.0.0.1:27518", true), QKV_INVALID_ARGUMENT);
    uint64_t learner = n.add_member("", "127.0.0.1:27518", true);
    CHECK(learner != 0 && learner != n.id());
    // A membership call returns once this node's member table shows the change.
    std::vector<q::member> ms = n.members();
    CHECK(ms.size() == 2);
    for (const q::member& m : ms)
        if (m.id == learner) CHECK(m.is_learner && m.name.empty() && m.peer_addr == "127.0.0.1:27518");
    THROWS(n.move_leader(learner), QKV_BAD_LEADER_TRANSFEREE);
    n.remove_member(learner);
    CHECK(n.members().size() == 1);
}

static void test_watch_pull(const q::node& n) {
    q::put_response first = n.put("w/1", "a");
    n.put("w/2", "b");
    n.delete_range("w/1");
    q::watch_options wo;
    wo.prefix = true;
    wo.prev_kv = true;
    wo.start_revision = first.header.revision;
    q::watch w(n, "w/", {}, wo);
    CHECK(static_cast<bool>(w));
    int seen = 0, deletes = 0;
    while (seen < 3) {
        std::optional<q::events> ev = w.next(5s);
        CHECK(ev.has_value());
        if (!ev) break;
        CHECK(ev->header().revision >= first.header.revision);
        for (const q::event& e : *ev) {
            CHECK(e.kv.mod_revision == first.header.revision + seen);
            if (e.type == q::event_type::delete_) {
                deletes++;
                CHECK(e.kv.key == "w/1" && e.prev_kv && e.prev_kv->value == "a");
            } else {
                CHECK(e.type == q::event_type::put && !e.kv.value.empty());
            }
            seen++;
        }
        CHECK(ev->raw(0).kv.key_len == 3);
        THROWS(ev->raw(ev->size()), QKV_INVALID_ARGUMENT);
    }
    CHECK(seen == 3 && deletes == 1);
    CHECK(!w.next(0ms));
    CHECK(!w.next(50ms));
    CHECK(!w.next(-5ms));  // negative: no wait

    // no_put: only deletes
    q::watch_options dels;
    dels.no_put = true;
    q::watch wd(n, "w/2", {}, dels);
    n.put("w/2", "c");
    n.delete_range("w/2");
    auto ev = wd.next(5s);
    CHECK(ev && ev->size() == 1 && (*ev)[0].type == q::event_type::delete_);
    wd.reset();
    CHECK(!wd);

    // cancel: the end is an error, again on every later call
    // (w still holds the two w/2 events: they are delivered first)
    w.cancel();
    w.cancel();  // idempotent
    int queued = 0;
    THROWS(for (;; queued++) CHECK(w.next(1s).has_value()), QKV_WATCH_CANCELED);
    CHECK(queued >= 1);
    THROWS(w.next(0ms), QKV_WATCH_CANCELED);
    CHECK(w.compact_revision() == 0);

    // a watch starting below the compaction point
    q::watch_options early;
    early.start_revision = 1;
    THROWS(q::watch(n, "w/", {}, early), QKV_COMPACTED);
    THROWS(q::watch(n, ""), QKV_EMPTY_KEY);

    // a watch that falls behind (> 1024 queued events) while its history is compacted
    // ends with QKV_COMPACTED and says where to restart
    q::watch_options lag;
    lag.prefix = true;
    q::watch slow(n, "lag/", {}, lag);
    int64_t last = 0;
    for (int round = 0; round < 12; round++) {
        q::txn t;
        for (int i = 0; i < 128; i++) t.put(q::branch::success, "lag/" + std::to_string(i), std::to_string(round));
        last = n.commit(t).header().revision;
    }
    n.compact(last);
    int64_t events_read = 0;
    bool compacted = false;
    try {
        for (;;) {
            auto e = slow.next(5s);
            if (!e) break;
            events_read += static_cast<int64_t>(e->size());
        }
    } catch (const q::error& e) {
        compacted = e.code() == QKV_COMPACTED;
        CHECK(compacted && e.compact_revision() == last);
    }
    CHECK(compacted);
    CHECK(events_read < 12 * 128);
    CHECK(slow.compact_revision() == last);
    THROWS(slow.next(0ms), QKV_COMPACTED);
    n.delete_range("lag/", {}, [] { q::delete_options o; o.prefix = true; return o; }());
}

static void test_watch_callback(const q::node& n) {
    struct seen_state {
        std::atomic<int> events{0};
        std::atomic<int> echoes{0};
        std::atomic<int> end_code{-1};
        std::atomic<bool> on_watch_thread{false};
    } s;
    std::thread::id main_thread = std::this_thread::get_id();
    q::watch_options wo;
    wo.prefix = true;
    q::watch w(
        n, "cb/", {}, wo,
        [&](q::events_view evs) {
            s.on_watch_thread = std::this_thread::get_id() != main_thread;
            for (const q::event& e : evs) {
                s.events++;
                // calling back into the library from the callback thread works
                if (e.kv.key == "cb/1") {
                    n.put("cb/echo", "e");
                    s.echoes++;
                }
            }
        },
        [&](const q::error& end) { s.end_code = end.code(); });
    n.put("cb/1", "x");
    n.put("cb/2", "y");
    CHECK(wait_until([&] { return s.events.load() == 3; }));  // cb/1, cb/2 and the echo
    CHECK(s.echoes.load() == 1 && s.on_watch_thread.load());
    THROWS(w.next(0ms), QKV_INVALID_ARGUMENT);  // not a pulled watch

    // moving the watch while it runs: the callback state moves with it
    q::watch moved = std::move(w);
    CHECK(!w && static_cast<bool>(moved));
    n.put("cb/3", "z");
    CHECK(wait_until([&] { return s.events.load() == 4; }));
    moved.cancel();
    CHECK(wait_until([&] { return s.end_code.load() == QKV_WATCH_CANCELED; }));
    moved.reset();
    w.reset();  // moved-from: no-op

    // a watch destroyed from its own callback: no further call, functions freed after it
    std::atomic<int> calls{0};
    std::mutex m;
    q::watch self;
    {
        std::lock_guard<std::mutex> lock(m);
        self = q::watch(n, "self/", {}, wo, [&](q::events_view) {
            calls++;
            std::lock_guard<std::mutex> l(m);
            self.reset();  // frees the C watch; this std::function lives until we return
        });
    }
    n.put("self/1", "a");
    CHECK(wait_until([&] { return calls.load() == 1; }));
    n.put("self/2", "b");
    std::this_thread::sleep_for(200ms);
    CHECK(calls.load() == 1);
    {
        std::lock_guard<std::mutex> l(m);
        CHECK(!self);
    }

    // destroyed from another thread while responses flow: waits, then no more calls
    std::atomic<int> busy{0};
    {
        q::watch flowing(n, "flow/", {}, wo, [&](q::events_view evs) {
            busy += static_cast<int>(evs.size());
            std::this_thread::sleep_for(5ms);
        });
        for (int i = 0; i < 20; i++) n.put("flow/" + std::to_string(i), "v");
        wait_until([&] { return busy.load() > 0; });
    }
    int after = busy.load();
    n.put("flow/x", "v");
    std::this_thread::sleep_for(100ms);
    CHECK(busy.load() == after);

    // a callback watch on an empty key fails like a pulled one
    THROWS(q::watch(n, "", {}, q::watch_options{}, [](q::events_view) {}), QKV_EMPTY_KEY);
}

static void test_leases(const q::node& n) {
    q::lease_grant_response g = n.lease_grant(60s);
    CHECK(g.id != 0 && g.ttl == 60 && g.header.revision > 0);
    THROWS(n.lease_grant(60s, g.id), QKV_LEASE_EXISTS);
    THROWS(n.lease_grant(std::chrono::seconds(9000000001LL)), QKV_LEASE_TTL_TOO_LARGE);
    q::lease_grant_response fixed = n.lease_grant(30s, 777);
    CHECK(fixed.id == 777);

    q::put_options po;
    po.lease = g.id;
    n.put("l/1", "v", po);
    n.put("l/2", "v", po);
    CHECK(n.get("l/1") && n.get("l/1")->lease == g.id);

    q::lease_ttl_response info = n.lease_time_to_live(g.id, true);
    CHECK(info.id == g.id && info.granted_ttl == 60 && info.ttl > 50 && info.attached_keys.size() == 2);
    CHECK(info.attached_keys.size() == 2 && info.attached_keys[0] == "l/1" && info.attached_keys.view(1) == "l/2");
    THROWS(info.attached_keys[2], QKV_INVALID_ARGUMENT);
    std::vector<std::string> ks;
    for (const std::string& k : info.attached_keys) ks.push_back(k);
    CHECK(ks.size() == 2);
    CHECK(n.lease_time_to_live(g.id).attached_keys.empty());

    CHECK(n.lease_keep_alive_once(g.id) == 60);
    q::keepalive ka = n.lease_keep_alive(g.id);
    CHECK(static_cast<bool>(ka));
    q::keepalive ka2 = std::move(ka);
    CHECK(!ka && static_cast<bool>(ka2));
    std::vector<int64_t> ids = n.lease_list();
    CHECK((ids == std::vector<int64_t>{777, g.id}) || (ids == std::vector<int64_t>{g.id, 777}));
    CHECK(std::is_sorted(ids.begin(), ids.end()));
    ka2.reset();
    ka2.reset();

    q::response_header h = n.lease_revoke(g.id);
    CHECK(h.revision > 0);
    CHECK(n.range("l/", {}, prefix_opts()).empty());
    CHECK(n.lease_time_to_live(g.id).ttl == -1);
    THROWS(n.lease_revoke(g.id), QKV_LEASE_NOT_FOUND);
    THROWS(n.lease_keep_alive_once(g.id), QKV_LEASE_NOT_FOUND);
    THROWS(n.lease_keep_alive(g.id), QKV_LEASE_NOT_FOUND);
    po.lease = 12345;
    THROWS(n.put("l/3", "v", po), QKV_LEASE_NOT_FOUND);
    n.lease_revoke(777);
    CHECK(n.lease_list().empty());
}

static void test_moved_from(q::node& n) {
    // node
    q::node empty;
    CHECK(!empty && empty.id() == 0 && empty.name().empty() && empty.client_addr().empty());
    THROWS(empty.put("k", "v"), QKV_NULL_PARAMETER);
    THROWS(empty.get("k"), QKV_NULL_PARAMETER);
    THROWS(empty.status(), QKV_NULL_PARAMETER);
    THROWS(empty.stop(), QKV_NULL_PARAMETER);
    THROWS(empty.lease_list(), QKV_NULL_PARAMETER);
    THROWS(q::watch(empty, "k"), QKV_NULL_PARAMETER);
    q::node taken = std::move(n);
    CHECK(!n && static_cast<bool>(taken));
    THROWS(n.put("k", "v"), QKV_NULL_PARAMETER);
    CHECK(taken.put("still", "works").header.revision > 0);
    n = std::move(taken);  // back
    CHECK(static_cast<bool>(n) && !taken);
    taken.reset();

    // kvs
    q::kvs r = n.range("still");
    CHECK(r.size() == 1);
    q::kvs r2 = std::move(r);
    CHECK(r.size() == 0 && r.handle() == nullptr && r2.size() == 1);
    THROWS(r[0], QKV_NULL_PARAMETER);
    r = std::move(r2);
    CHECK(r.size() == 1 && r2.empty());
    q::kvs_view view = r.view();  // a borrowed view of the owned list
    CHECK(view.size() == 1 && view[0].value == "works");
    qkv_kvs* raw = r.release();
    CHECK(r.empty());
    q::kvs back(raw);
    CHECK(back.size() == 1);

    // bytes
    std::optional<q::bytes> b = n.get_value("still");
    CHECK(b && b->view() == "works");
    q::bytes b2 = std::move(*b);
    CHECK(b->empty() && b->data() == nullptr && b->view().empty() && b2.view() == "works");
    b2.reset();
    CHECK(b2.empty());
    b2.reset();

    // txn and its result
    q::txn t;
    t.put(q::branch::success, "still", "again");
    q::txn t2 = std::move(t);
    THROWS(t.put(q::branch::success, "k", "v"), QKV_NULL_PARAMETER);
    THROWS(n.commit(t), QKV_NULL_PARAMETER);
    q::txn_result res = n.commit(t2);
    q::txn_result res2 = std::move(res);
    CHECK(!res.succeeded() && res.size() == 0 && res.header().revision == 0);
    CHECK(res2.succeeded() && res2.size() == 1);
    res = std::move(res2);
    CHECK(res.succeeded());

    // events
    q::watch_options wo;
    wo.start_revision = res.header().revision;
    q::watch w(n, "still", {}, wo);
    auto ev = w.next(5s);
    CHECK(ev && ev->size() == 1);
    if (ev) {
        q::events ev2 = std::move(*ev);
        CHECK(ev->empty() && ev->handle() == nullptr && ev2.size() == 1);
        CHECK(ev2[0].kv.value == "again");
    }
    q::watch w2 = std::move(w);
    THROWS(w.next(0ms), QKV_NULL_PARAMETER);
    THROWS(w.cancel(), QKV_NULL_PARAMETER);
    CHECK(w.compact_revision() == 0);
    CHECK(!w2.next(0ms));

    // keys
    q::lease_grant_response g = n.lease_grant(60s);
    q::put_options po;
    po.lease = g.id;
    n.put("leased", "v", po);
    q::keys ks = n.lease_time_to_live(g.id, true).attached_keys;
    q::keys ks2 = std::move(ks);
    CHECK(ks.empty() && ks2.size() == 1);
    THROWS(ks.view(0), QKV_NULL_PARAMETER);
    n.lease_revoke(g.id);
}

static q::config single_config(const std::string& dir) {
    return q::config("c1", dir, kPeer)
        .timeouts(50ms, 300ms)
        .request_timeout(5s)
        .snapshot_threshold(10000, 5000)
        .limits(1536 * 1024, 128)
        .cluster_token("cpp-test")
        .client_addr("127.0.0.1:0");
}

static void test_single_node() {
    std::string dir = base_dir + "/c1";
    q::node n(single_config(dir));
    SECTION("crud", test_crud(n));  // first a write: status and members then show the leader
    SECTION("node info", test_node_info(n));
    SECTION("txn", test_txn(n));
    SECTION("errors", test_errors(n));
    SECTION("watch pull", test_watch_pull(n));
    SECTION("watch callback", test_watch_callback(n));
    SECTION("leases", test_leases(n));
    SECTION("moved-from", test_moved_from(n));

    SECTION("stop and restart", {
        // a second node on a locked data dir is refused
        THROWS(q::node(q::config("c1", dir, "127.0.0.1:27512")), QKV_DATA_DIR_LOCKED);
        n.put("survives", "restarts");
        q::watch w(n, "survives");
        std::atomic<int> end_code{-1};
        q::watch_options none;
        q::watch cbw(n, "survives", {}, none, [](q::events_view) {},
                     [&](const q::error& e) { end_code = e.code(); });
        n.stop();
        THROWS(w.next(2s), QKV_STOPPED);
        CHECK(wait_until([&] { return end_code.load() == QKV_STOPPED; }));
        THROWS(n.put("k", "v"), QKV_STOPPED);
        THROWS(n.status(), QKV_STOPPED);
        n.stop();  // idempotent
        n.reset();
        THROWS(w.next(0ms), QKV_STOPPED);  // the watch outlives its node
        for (int i = 0; i < 3; i++) {
            q::node again(single_config(dir));
            auto v = again.get_value("survives");
            CHECK(v && v->view() == "restarts");
            again.put("round", std::to_string(i));
        }
    });
}

// ---------------------------------------------------------------------------------------

static const char* kNames[3] = {"a1", "a2", "a3"};
static const char* kPeers[3] = {"127.0.0.1:27521", "127.0.0.1:27522", "127.0.0.1:27523"};

static q::node start_a(int i) {
    q::config c = node_config(kNames[i], kPeers[i]);
    for (int j = 0; j < 3; j++) c.initial_member(kNames[j], kPeers[j]);
    return q::node(c.cluster_token("cluster-a"));
}

static int leader_index(const std::vector<q::node>& nodes, int skip = -1) {
    int found = -1;
    wait_until([&] {
        for (int i = 0; i < 3; i++) {
            if (i == skip || !nodes[i]) continue;
            try {
                if (nodes[i].status().is_leader) {
                    found = i;
                    return true;
                }
            } catch (const q::error&) {
            }
        }
        return false;
    });
    return found;
}

static void test_cluster() {
    std::vector<q::node> a(3);
    for (int i = 2; i >= 0; i--) a[i] = start_a(i);  // static bootstrap: any order
    for (int i = 0; i < 30; i++) a[i % 3].put("k" + std::to_string(i), "v" + std::to_string(i));
    CHECK(a[1].range("k", {}, prefix_opts()).size() == 30);
    CHECK(a[0].members().size() == 3);

    // move the leadership to another voter
    int li = leader_index(a);
    CHECK(li >= 0);
    if (li < 0) return;
    int target = (li + 1) % 3;
    a[li].move_leader(a[target].id());
    CHECK(wait_until([&] { return a[target].status().is_leader; }));
    li = leader_index(a);
    CHECK(li == target);
    CHECK(a[(li + 2) % 3].leader().value_or(0) == a[li].id() ||
          wait_until([&] { return a[(li + 2) % 3].leader().value_or(0) == a[li].id(); }));

    // stop the leader: a new one is elected among the other two, every key is there
    uint64_t old_leader = a[li].id();
    a[li].reset();
    int ni = leader_index(a, li);
    CHECK(ni >= 0 && a[ni].id() != old_leader);
    if (ni < 0) return;
    int other = 3 - li - ni;
    CHECK(a[other].range("", {}, prefix_opts()).size() == 30);
    a[other].put("after", "x");

    // restart the stopped node from its data dir: it catches up
    a[li] = start_a(li);
    CHECK(a[li].id() == old_leader);
    auto v = a[li].get_value("after");
    CHECK(v && v->view() == "x");
    q::range_options ser = prefix_opts();
    ser.serializable = true;
    CHECK(a[li].range("", {}, ser).size() == 31);
}

static void test_local_network() {
    static const char* names[3] = {"l1", "l2", "l3"};
    static const char* peers[3] = {"127.0.0.1:27541", "127.0.0.1:27542", "127.0.0.1:27543"};
    std::vector<q::node> c(3);
    uint64_t before = 0;
    {
        q::local_network net;
        for (int i = 2; i >= 0; i--) {
            q::config cfg = node_config(names[i], peers[i]).local_network(net);
            for (int j = 0; j < 3; j++) cfg.initial_member(names[j], peers[j]);
            c[i] = q::node(std::move(cfg));
        }
        before = net.forwarded();
        for (int i = 0; i < 3; i++) c[i].put("c" + std::to_string(i), "1");  // followers forward in memory
        CHECK(net.forwarded() > before);
        CHECK(net.deliveries() >= net.forwarded());
        q::local_network moved = std::move(net);
        THROWS(node_config("l9", "127.0.0.1:27549").local_network(net), QKV_NULL_PARAMETER);
    }  // the network is freed; the nodes keep theirs
    c[0].put("c-after", "1");
    for (int i = 0; i < 3; i++) CHECK(c[i].range("c", {}, prefix_opts()).size() == 4);
}

static void test_join() {
    q::node b1(node_config("b1", "127.0.0.1:27531"));
    q::node b2(node_config("b2", "127.0.0.1:27532").join_peer("127.0.0.1:27531").join_as_learner());
    CHECK(b2.status().is_learner);
    CHECK(b1.members().size() == 2);  // the leader's table shows a join before it replies
    b1.promote_member(b2.id());
    CHECK(wait_until([&] { return !b2.status().is_learner; }));
    b2.put("b-only", "1");  // forwarded to the leader
    CHECK(b1.get("b-only") && b1.get("b-only")->value == "1");
    std::vector<q::member> ms = b1.members();
    CHECK(ms.size() == 2);
    for (const q::member& m : ms) CHECK(!m.is_learner && (m.name == "b1" || m.name == "b2"));
    b1.remove_member(b2.id());
    CHECK(b1.members().size() == 1);
}

int main(int argc, char** argv) {
    // SIGPIPE keeps its default disposition (kill the process): the library must not
    // raise it when a peer's connection is gone (a stopped or removed member).
    bool own_dir = argc < 2;
    if (own_dir) {
        char tmpl[] = "/tmp/qkv-cpp-test-XXXXXX";
        if (!mkdtemp(tmpl)) {
            std::perror("mkdtemp");
            return 2;
        }
        base_dir = tmpl;
    } else {
        base_dir = argv[1];
    }
    std::printf("quorumkv %s (ABI %u), data in %s\n", std::string(q::version()).c_str(), q::abi_version(),
                base_dir.c_str());
    SECTION("basics", test_basics());
    SECTION("single node", test_single_node());
    SECTION("cluster", test_cluster());
    SECTION("join", test_join());
    SECTION("local network", test_local_network());
    if (own_dir) std::filesystem::remove_all(base_dir);
    std::printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
