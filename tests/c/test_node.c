/* C ABI tests on one node: CRUD with range/txn options, watch (pull and callback),
 * leases, bad input, and stop/start of the same node 20 times. Built with
 * -std=c11 -Wall -Wextra -Werror -pedantic and AddressSanitizer by tests/c/run. */
#include "quorumkv.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                                   \
    do {                                                                              \
        checks++;                                                                     \
        if (!(cond)) {                                                                \
            char detail_[512];                                                        \
            qkv_last_error(detail_, sizeof detail_);                                  \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (last error: %s)\n", __FILE__,   \
                    __LINE__, #cond, detail_);                                        \
            failures++;                                                               \
        }                                                                             \
    } while (0)

#define OK(call) CHECK((call) == QKV_OK)
#define S(str) (const uint8_t *)(str), strlen(str)

static qkv_node *start_node(const char *dir, const char *peer) {
    qkv_config *cfg = NULL;
    qkv_node *node = NULL;
    OK(qkv_config_new("c1", dir, peer, &cfg));
    OK(qkv_config_set_timeouts(cfg, 50, 300));
    OK(qkv_node_start(cfg, &node));
    qkv_config_free(cfg);
    return node;
}

static void test_crud(qkv_node *node) {
    qkv_header h;
    OK(qkv_put(node, S("app/a"), S("1"), NULL, &h, NULL));
    CHECK(h.revision >= 2);
    CHECK(h.cluster_id != 0 && h.member_id == qkv_node_id(node));
    OK(qkv_put(node, S("app/b"), S("2"), NULL, NULL, NULL));
    OK(qkv_put(node, S("app/c"), S("3"), NULL, NULL, NULL));
    OK(qkv_put(node, S("other"), S("x"), NULL, NULL, NULL));

    /* prev_kv */
    qkv_put_options po = {.size = sizeof po, .prev_kv = true};
    qkv_kvs *prev = NULL;
    OK(qkv_put(node, S("app/a"), S("11"), &po, NULL, &prev));
    CHECK(qkv_kvs_len(prev) == 1);
    qkv_kv kv;
    OK(qkv_kvs_get(prev, 0, &kv));
    CHECK(kv.value_len == 1 && memcmp(kv.value, "1", 1) == 0);
    qkv_kvs_free(prev);

    /* get, linearizable and serializable */
    qkv_kvs *got = NULL;
    OK(qkv_get(node, S("app/a"), NULL, &got));
    CHECK(qkv_kvs_len(got) == 1);
    OK(qkv_kvs_get(got, 0, &kv));
    CHECK(kv.key_len == 5 && memcmp(kv.key, "app/a", 5) == 0);
    CHECK(kv.value_len == 2 && memcmp(kv.value, "11", 2) == 0);
    CHECK(kv.version == 2 && kv.create_revision < kv.mod_revision);
    CHECK(qkv_kvs_get(got, 1, &kv) == QKV_INVALID_ARGUMENT);
    qkv_kvs_free(got);
    qkv_range_options ser = {.size = sizeof ser, .serializable = true};
    OK(qkv_get(node, S("missing"), &ser, &got));
    CHECK(qkv_kvs_len(got) == 0);
    qkv_kvs_free(got);

    qkv_bytes value = {NULL, 0};
    OK(qkv_get_value(node, S("app/b"), false, &value));
    CHECK(value.len == 1 && value.ptr[0] == '2');
    qkv_bytes_free(&value);
    CHECK(value.ptr == NULL);
    CHECK(qkv_get_value(node, S("missing"), false, &value) == QKV_KEY_NOT_FOUND);

    /* prefix, limit, sort, keys_only, count_only */
    qkv_range_options ro = {.size = sizeof ro, .prefix = true, .limit = 2,
                            .sort_order = QKV_SORT_DESCEND, .sort_target = QKV_SORT_BY_KEY};
    qkv_kvs *r = NULL;
    OK(qkv_range(node, S("app/"), NULL, 0, &ro, &r));
    CHECK(qkv_kvs_len(r) == 2 && qkv_kvs_more(r) && qkv_kvs_count(r) == 3);
    OK(qkv_kvs_get(r, 0, &kv));
    CHECK(kv.key_len == 5 && memcmp(kv.key, "app/c", 5) == 0);
    qkv_kvs_free(r);
    qkv_range_options co = {.size = sizeof co, .prefix = true, .count_only = true};
    OK(qkv_range(node, S("app/"), NULL, 0, &co, &r));
    CHECK(qkv_kvs_len(r) == 0 && qkv_kvs_count(r) == 3);
    qkv_kvs_free(r);
    qkv_range_options ko = {.size = sizeof ko, .keys_only = true};
    OK(qkv_range(node, S("app/a"), S("app/c"), &ko, &r));
    CHECK(qkv_kvs_len(r) == 2);
    OK(qkv_kvs_get(r, 1, &kv));
    CHECK(kv.value_len == 0 && kv.key_len == 5);
    qkv_kvs_free(r);

    /* a past revision */
    qkv_range_options past = {.size = sizeof past, .revision = h.revision};
    OK(qkv_get(node, S("app/a"), &past, &got));
    OK(qkv_kvs_get(got, 0, &kv));
    CHECK(kv.value_len == 1 && kv.value[0] == '1');
    qkv_kvs_free(got);
    qkv_range_options future = {.size = sizeof future, .revision = 1000000};
    CHECK(qkv_get(node, S("app/a"), &future, &got) == QKV_FUTURE_REVISION);

    /* txn: compare value, success put + range, failure branch */
    qkv_txn *txn = NULL;
    OK(qkv_txn_new(&txn));
    OK(qkv_txn_compare(txn, S("app/a"), NULL, 0, QKV_COMPARE_VALUE, QKV_EQUAL, 0, S("11")));
    OK(qkv_txn_put(txn, QKV_TXN_SUCCESS, S("app/d"), S("4"), NULL));
    OK(qkv_txn_range(txn, QKV_TXN_SUCCESS, S("app/"), NULL, 0, &(qkv_range_options){.size = sizeof(qkv_range_options), .prefix = true}));
    OK(qkv_txn_delete_range(txn, QKV_TXN_FAILURE, S("app/a"), NULL, 0, NULL));
    qkv_txn *inner = NULL;
    OK(qkv_txn_new(&inner));
    OK(qkv_txn_put(inner, QKV_TXN_SUCCESS, S("nested"), S("n"), NULL));
    OK(qkv_txn_nest(txn, QKV_TXN_SUCCESS, inner));
    CHECK(qkv_txn_nest(txn, QKV_TXN_SUCCESS, txn) == QKV_INVALID_ARGUMENT);
    qkv_txn_free(inner);
    qkv_txn_result *tr = NULL;
    OK(qkv_txn_commit(node, txn, &tr));
    CHECK(qkv_txn_result_succeeded(tr));
    CHECK(qkv_txn_result_len(tr) == 3);
    qkv_txn_op op;
    OK(qkv_txn_result_op(tr, 1, &op));
    CHECK(op.kind == QKV_OP_RANGE && qkv_kvs_len(op.kvs) == 4);
    OK(qkv_txn_result_op(tr, 2, &op));
    CHECK(op.kind == QKV_OP_TXN && qkv_txn_result_succeeded(op.txn) && qkv_txn_result_len(op.txn) == 1);
    qkv_txn_result_free(tr);
    /* the same txn again: the compare still holds; a key written twice is refused */
    OK(qkv_txn_put(txn, QKV_TXN_SUCCESS, S("app/d"), S("5"), NULL));
    CHECK(qkv_txn_commit(node, txn, &tr) == QKV_DUPLICATE_KEY);
    qkv_txn_free(txn);

    OK(qkv_txn_new(&txn));
    OK(qkv_txn_compare(txn, S("app/a"), NULL, 0, QKV_COMPARE_VERSION, QKV_GREATER, 100, NULL, 0));
    OK(qkv_txn_delete_range(txn, QKV_TXN_FAILURE, S("other"), NULL, 0, NULL));
    OK(qkv_txn_commit(node, txn, &tr));
    CHECK(!qkv_txn_result_succeeded(tr));
    OK(qkv_txn_result_op(tr, 0, &op));
    CHECK(op.kind == QKV_OP_DELETE_RANGE && op.deleted == 1);
    qkv_txn_result_free(tr);
    qkv_txn_free(txn);

    /* delete with prefix and prev_kv */
    qkv_delete_options dopt = {.size = sizeof dopt, .prefix = true, .prev_kv = true};
    int64_t deleted = 0;
    qkv_kvs *gone = NULL;
    OK(qkv_delete_range(node, S("app/"), NULL, 0, &dopt, &deleted, &h, &gone));
    CHECK(deleted == 4 && qkv_kvs_len(gone) == 4);
    qkv_kvs_free(gone);

    /* compaction */
    OK(qkv_compact(node, h.revision - 1, NULL));
    qkv_range_options old = {.size = sizeof old, .revision = 2};
    CHECK(qkv_get(node, S("app/a"), &old, &got) == QKV_COMPACTED);
}

static void test_watch_pull(qkv_node *node) {
    qkv_header h;
    OK(qkv_put(node, S("w/1"), S("a"), NULL, &h, NULL));
    OK(qkv_put(node, S("w/2"), S("b"), NULL, NULL, NULL));
    OK(qkv_delete_range(node, S("w/1"), NULL, 0, NULL, NULL, NULL, NULL));
    qkv_watch_options wo = {.size = sizeof wo, .prefix = true, .prev_kv = true, .start_revision = h.revision};
    qkv_watch *w = NULL;
    OK(qkv_watch_new(node, S("w/"), NULL, 0, &wo, &w));
    int seen = 0, deletes = 0;
    while (seen < 3) {
        qkv_events *ev = NULL;
        qkv_result rc = qkv_watch_next(w, 5000, &ev);
        CHECK(rc == QKV_OK);
        if (rc != QKV_OK) break;
        for (size_t i = 0; i < qkv_events_len(ev); i++) {
            qkv_event e;
            OK(qkv_events_get(ev, i, &e));
            CHECK(e.kv.mod_revision == h.revision + seen);
            if (e.kind == QKV_EVENT_DELETE) {
                deletes++;
                CHECK(e.has_prev_kv && e.prev_kv.value_len == 1 && e.prev_kv.value[0] == 'a');
            }
            seen++;
        }
        qkv_events_free(ev);
    }
    CHECK(seen == 3 && deletes == 1);
    qkv_events *ev = NULL;
    CHECK(qkv_watch_next(w, 0, &ev) == QKV_TIMEOUT);
    CHECK(qkv_watch_next(w, 50, &ev) == QKV_TIMEOUT);
    OK(qkv_watch_cancel(w));
    CHECK(qkv_watch_next(w, 1000, &ev) == QKV_WATCH_CANCELED);
    CHECK(qkv_watch_next(w, 0, &ev) == QKV_WATCH_CANCELED);
    qkv_watch_free(w);

    /* a watch from a compacted revision */
    qkv_status st = {.size = sizeof st};
    OK(qkv_node_status(node, &st));
    qkv_watch_options early = {.size = sizeof early, .start_revision = 1};
    CHECK(qkv_watch_new(node, S("w/"), NULL, 0, &early, &w) == QKV_COMPACTED);
}

struct seen {
    atomic_int events;
    atomic_int final_status;
    atomic_int puts_from_callback;
    qkv_node *node;
};

static void on_watch(void *userdata, qkv_result status, const qkv_events *events, int64_t compact_revision) {
    struct seen *s = userdata;
    (void)compact_revision;
    if (status != QKV_OK) {
        atomic_store(&s->final_status, (int)status);
        return;
    }
    for (size_t i = 0; i < qkv_events_len(events); i++) {
        qkv_event e;
        if (qkv_events_get(events, i, &e) == QKV_OK) atomic_fetch_add(&s->events, 1);
        /* calling back into the library from the callback thread works */
        if (e.kv.key_len == 4 && memcmp(e.kv.key, "cb/1", 4) == 0 &&
            qkv_put(s->node, S("cb/echo"), S("e"), NULL, NULL, NULL) == QKV_OK)
            atomic_fetch_add(&s->puts_from_callback, 1);
    }
}

static void test_watch_callback(qkv_node *node) {
    struct seen s = {0};
    s.node = node;
    atomic_store(&s.final_status, -1);
    qkv_watch_options wo = {.size = sizeof wo, .prefix = true};
    qkv_watch *w = NULL;
    OK(qkv_watch_start(node, S("cb/"), NULL, 0, &wo, on_watch, &s, &w));
    OK(qkv_put(node, S("cb/1"), S("x"), NULL, NULL, NULL));
    OK(qkv_put(node, S("cb/2"), S("y"), NULL, NULL, NULL));
    for (int i = 0; i < 500 && atomic_load(&s.events) < 3; i++) {
        qkv_bytes b = {NULL, 0};
        (void)qkv_get_value(node, S("cb/2"), true, &b);
        qkv_bytes_free(&b);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(&s.events) == 3); /* cb/1, cb/2 and the echo */
    CHECK(atomic_load(&s.puts_from_callback) == 1);
    OK(qkv_watch_cancel(w));
    for (int i = 0; i < 500 && atomic_load(&s.final_status) < 0; i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    CHECK(atomic_load(&s.final_status) == QKV_WATCH_CANCELED);
    qkv_watch_free(w);
    CHECK(qkv_watch_start(node, S("cb/"), NULL, 0, &wo, NULL, &s, &w) == QKV_NULL_PARAMETER);
}

static void test_leases(qkv_node *node) {
    int64_t id = 0, ttl = 0;
    OK(qkv_lease_grant(node, 60, 0, &id, &ttl, NULL));
    CHECK(id != 0 && ttl == 60);
    CHECK(qkv_lease_grant(node, 60, id, NULL, NULL, NULL) == QKV_LEASE_EXISTS);
    qkv_put_options po = {.size = sizeof po, .lease = id};
    OK(qkv_put(node, S("l/1"), S("v"), &po, NULL, NULL));
    OK(qkv_put(node, S("l/2"), S("v"), &po, NULL, NULL));
    qkv_lease_info info;
    qkv_keys *keys = NULL;
    OK(qkv_lease_time_to_live(node, id, &info, &keys));
    CHECK(info.granted_ttl == 60 && info.ttl > 50 && qkv_keys_len(keys) == 2);
    const uint8_t *k = NULL;
    size_t klen = 0;
    OK(qkv_keys_get(keys, 0, &k, &klen));
    CHECK(klen == 3 && memcmp(k, "l/1", 3) == 0);
    qkv_keys_free(keys);
    OK(qkv_lease_keep_alive_once(node, id, &ttl));
    CHECK(ttl == 60);
    qkv_keepalive *ka = NULL;
    OK(qkv_lease_keep_alive_start(node, id, &ka));
    size_t count = 0;
    int64_t ids[4];
    OK(qkv_lease_list(node, ids, 4, &count));
    CHECK(count == 1 && ids[0] == id);
    qkv_keepalive_free(ka);
    OK(qkv_lease_revoke(node, id, NULL));
    qkv_kvs *r = NULL;
    OK(qkv_range(node, S("l/"), NULL, 0, &(qkv_range_options){.size = sizeof(qkv_range_options), .prefix = true}, &r));
    CHECK(qkv_kvs_len(r) == 0);
    qkv_kvs_free(r);
    OK(qkv_lease_time_to_live(node, id, &info, NULL));
    CHECK(info.ttl == -1);
    CHECK(qkv_lease_revoke(node, id, NULL) == QKV_LEASE_NOT_FOUND);
    CHECK(qkv_lease_keep_alive_start(node, id, &ka) == QKV_LEASE_NOT_FOUND);
    po.lease = 12345;
    CHECK(qkv_put(node, S("l/3"), S("v"), &po, NULL, NULL) == QKV_LEASE_NOT_FOUND);
}

static void test_bad_input(qkv_node *node) {
    qkv_header h;
    qkv_kvs *r = NULL;
    CHECK(qkv_put(NULL, S("k"), S("v"), NULL, NULL, NULL) == QKV_NULL_PARAMETER);
    CHECK(qkv_put(node, NULL, 3, S("v"), NULL, NULL, NULL) == QKV_NULL_PARAMETER);
    CHECK(qkv_put(node, (const uint8_t *)"", 0, S("v"), NULL, NULL, NULL) == QKV_EMPTY_KEY);
    CHECK(qkv_put(node, S("k"), NULL, 0, NULL, &h, NULL) == QKV_OK); /* empty value is fine */
    CHECK(qkv_get(node, S("k"), NULL, NULL) == QKV_NULL_PARAMETER);
    qkv_range_options bad = {.size = 3};
    CHECK(qkv_get(node, S("k"), &bad, &r) == QKV_INVALID_ARGUMENT);
    qkv_range_options huge = {.size = 4096};
    CHECK(qkv_get(node, S("k"), &huge, &r) == QKV_INVALID_ARGUMENT);
    qkv_range_options sort = {.size = sizeof sort, .sort_order = 7};
    CHECK(qkv_range(node, S("k"), NULL, 0, &sort, &r) == QKV_INVALID_ARGUMENT);
    char detail[256];
    size_t n = qkv_node_last_error(node, detail, sizeof detail);
    CHECK(n > 0 && strstr(detail, "sort_order") != NULL);
    CHECK(qkv_last_error(NULL, 0) == n);
    char tiny[4];
    CHECK(qkv_last_error(tiny, sizeof tiny) == n && strlen(tiny) == 3);

    /* oversize value: refused, nothing lost */
    size_t big = 2 * 1024 * 1024;
    uint8_t *blob = calloc(1, big);
    CHECK(qkv_put(node, S("k"), blob, big, NULL, NULL, NULL) == QKV_REQUEST_TOO_LARGE);
    free(blob);
    qkv_bytes v = {NULL, 0};
    OK(qkv_get_value(node, S("k"), false, &v));
    qkv_bytes_free(&v);

    /* ignore_value/ignore_lease rules */
    qkv_put_options iv = {.size = sizeof iv, .ignore_value = true};
    CHECK(qkv_put(node, S("absent"), NULL, 0, &iv, NULL, NULL) == QKV_KEY_NOT_FOUND);
    CHECK(qkv_put(node, S("k"), S("v"), &iv, NULL, NULL) == QKV_VALUE_PROVIDED);

    /* text arguments must be UTF-8; NULL handles */
    qkv_config *cfg = NULL;
    CHECK(qkv_config_new("\xff\xfe", "/tmp/x", "127.0.0.1:1", &cfg) == QKV_INVALID_ARGUMENT);
    CHECK(qkv_config_new(NULL, "/tmp/x", "127.0.0.1:1", &cfg) == QKV_NULL_PARAMETER);
    CHECK(qkv_config_new("", "/tmp/x", "127.0.0.1:1", &cfg) == QKV_INVALID_ARGUMENT);
    CHECK(qkv_node_start(NULL, NULL) == QKV_NULL_PARAMETER);
    qkv_status st = {.size = 0};
    CHECK(qkv_node_status(node, &st) == QKV_INVALID_ARGUMENT);
    CHECK(qkv_node_status(NULL, &st) == QKV_NULL_PARAMETER);
    CHECK(qkv_kvs_len(NULL) == 0);
    qkv_kvs_free(NULL);
    qkv_node_free(NULL);
    qkv_watch_free(NULL);
    qkv_txn_free(NULL);
    qkv_bytes_free(NULL);
    CHECK(strcmp(qkv_result_message(QKV_COMPACTED), "etcdserver: mvcc: required revision has been compacted") == 0);
    CHECK(strcmp(qkv_result_message(9999), "unknown qkv_result") == 0);
    CHECK(qkv_abi_version() == QKV_ABI_VERSION);
    CHECK(strlen(qkv_version()) > 0);
}

static void test_node_info(qkv_node *node) {
    qkv_status st = {.size = sizeof st};
    OK(qkv_node_status(node, &st));
    CHECK(st.is_leader && st.leader == st.id && st.term >= 1 && st.revision >= 1);
    CHECK(st.applied_index > 0 && st.db_size_bytes > 0 && !st.fatal);
    CHECK(strcmp(qkv_node_name(node), "c1") == 0);
    uint64_t leader = 0;
    OK(qkv_node_leader(node, &leader));
    CHECK(leader == qkv_node_id(node));
    qkv_members *m = NULL;
    OK(qkv_node_members(node, &m));
    CHECK(qkv_members_len(m) == 1);
    qkv_member mem = {0};
    OK(qkv_members_get(m, 0, &mem));
    CHECK(mem.id == leader && mem.name && strcmp(mem.name, "c1") == 0 && !mem.is_learner);
    qkv_members_free(m);
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
        return 2;
    }
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/c1", argv[1]);
    qkv_node *node = start_node(dir, "127.0.0.1:27411");
    if (!node) return 1;
    test_crud(node); /* info after a write: status and members then show the leader */
    test_node_info(node);
    test_watch_pull(node);
    test_watch_callback(node);
    test_leases(node);
    test_bad_input(node);

    /* a second node on a locked data dir is refused */
    qkv_config *cfg = NULL;
    qkv_node *other = NULL;
    OK(qkv_config_new("c1", dir, "127.0.0.1:27412", &cfg));
    CHECK(qkv_node_start(cfg, &other) == QKV_DATA_DIR_LOCKED);
    qkv_config_free(cfg);

    OK(qkv_put(node, S("survives"), S("restarts"), NULL, NULL, NULL));
    qkv_watch *w = NULL;
    OK(qkv_watch_new(node, S("survives"), NULL, 0, NULL, &w));
    OK(qkv_node_stop(node));
    qkv_events *ev = NULL;
    CHECK(qkv_watch_next(w, 2000, &ev) == QKV_STOPPED);
    qkv_watch_free(w);
    CHECK(qkv_put(node, S("k"), S("v"), NULL, NULL, NULL) == QKV_STOPPED);
    OK(qkv_node_stop(node)); /* idempotent */
    qkv_node_free(node);

    /* stop and start the same node on the same ports 20 times */
    for (int i = 0; i < 20; i++) {
        node = start_node(dir, "127.0.0.1:27411");
        if (!node) break;
        qkv_bytes v = {NULL, 0};
        OK(qkv_get_value(node, S("survives"), false, &v));
        CHECK(v.len == 8 && memcmp(v.ptr, "restarts", 8) == 0);
        qkv_bytes_free(&v);
        OK(qkv_put(node, S("round"), S("r"), NULL, NULL, NULL));
        qkv_node_free(node);
    }
    printf("test_node: %d checks, %d failed\n", checks, failures);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
