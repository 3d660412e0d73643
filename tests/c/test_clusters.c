/* Independent nodes in one C process: a 3-node cluster (static bootstrap), a 2-node
 * cluster (one node, then a second joining through it), and at the end a 3-node cluster
 * on a local network. The 3-node cluster
 * loses its leader: a new one is elected, every key survives, and the stopped node
 * restarts from its data dir and catches up. */
#include "quorumkv.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

static int failures = 0, checks = 0;
#define CHECK(cond)                                                                     \
    do {                                                                                \
        checks++;                                                                       \
        if (!(cond)) {                                                                  \
            char d_[512];                                                               \
            qkv_last_error(d_, sizeof d_);                                              \
            fprintf(stderr, "%s:%d: CHECK(%s) failed (%s)\n", __FILE__, __LINE__, #cond, d_); \
            failures++;                                                                 \
        }                                                                               \
    } while (0)
#define OK(call) CHECK((call) == QKV_OK)

static const char *names[3] = {"a1", "a2", "a3"};
static const char *peers[3] = {"127.0.0.1:27421", "127.0.0.1:27422", "127.0.0.1:27423"};

static void nap_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static qkv_config *config(const char *base, const char *name, const char *peer) {
    char dir[1024];
    snprintf(dir, sizeof dir, "%s/%s", base, name);
    qkv_config *cfg = NULL;
    OK(qkv_config_new(name, dir, peer, &cfg));
    OK(qkv_config_set_timeouts(cfg, 50, 300));
    return cfg;
}

static qkv_node *start_a(const char *base, int i) {
    qkv_config *cfg = config(base, names[i], peers[i]);
    for (int j = 0; j < 3; j++) OK(qkv_config_add_initial_member(cfg, names[j], peers[j]));
    OK(qkv_config_set_cluster_token(cfg, "cluster-a"));
    qkv_node *n = NULL;
    OK(qkv_node_start(cfg, &n));
    qkv_config_free(cfg);
    return n;
}

static int leader_index(qkv_node **nodes, int skip) {
    for (int tries = 0; tries < 200; tries++) {
        for (int i = 0; i < 3; i++) {
            qkv_status st = {.size = sizeof st};
            if (i != skip && nodes[i] && qkv_node_status(nodes[i], &st) == QKV_OK && st.is_leader) return i;
        }
        nap_ms(25);
    }
    return -1;
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    qkv_node *a[3] = {NULL, NULL, NULL};
    /* static bootstrap needs the members up together: start them in reverse order */
    for (int i = 2; i >= 0; i--) a[i] = start_a(argv[1], i);
    if (!a[0] || !a[1] || !a[2]) return 1;

    /* cluster B: one node, then a second joining through it, as a learner first */
    qkv_config *cb1 = config(argv[1], "b1", "127.0.0.1:27431");
    qkv_node *b1 = NULL, *b2 = NULL;
    OK(qkv_node_start(cb1, &b1));
    qkv_config_free(cb1);
    qkv_config *cb2 = config(argv[1], "b2", "127.0.0.1:27432");
    OK(qkv_config_add_join_peer(cb2, "127.0.0.1:27431"));
    OK(qkv_config_set_join_as_learner(cb2, true));
    OK(qkv_node_start(cb2, &b2));
    qkv_config_free(cb2);
    if (!b1 || !b2) return 1;
    qkv_status sb = {.size = sizeof sb};
    OK(qkv_node_status(b2, &sb));
    CHECK(sb.is_learner);
    OK(qkv_node_promote_member(b1, qkv_node_id(b2)));

    /* the clusters are separate: different ids, separate data */
    char key[32], val[32];
    for (int i = 0; i < 50; i++) {
        int n = snprintf(key, sizeof key, "k%02d", i), m = snprintf(val, sizeof val, "v%d", i);
        OK(qkv_put(a[i % 3], (const uint8_t *)key, (size_t)n, (const uint8_t *)val, (size_t)m, NULL, NULL, NULL));
    }
    OK(qkv_put(b2, (const uint8_t *)"b-only", 6, (const uint8_t *)"1", 1, NULL, NULL, NULL));
    qkv_kvs *r = NULL;
    qkv_range_options all = {.size = sizeof all, .prefix = true};
    OK(qkv_range(b1, (const uint8_t *)"", 0, NULL, 0, &all, &r));
    CHECK(qkv_kvs_len(r) == 1);
    qkv_header hb = qkv_kvs_header(r);
    qkv_kvs_free(r);
    OK(qkv_range(a[1], (const uint8_t *)"", 0, NULL, 0, &all, &r));
    CHECK(qkv_kvs_len(r) == 50);
    CHECK(qkv_kvs_header(r).cluster_id != hb.cluster_id);
    qkv_kvs_free(r);
    qkv_members *m = NULL;
    OK(qkv_node_members(a[0], &m));
    CHECK(qkv_members_len(m) == 3);
    qkv_members_free(m);

    /* stop the leader: a new one is elected among the other two, every key is there */
    int li = leader_index(a, -1);
    CHECK(li >= 0);
    uint64_t old_leader = qkv_node_id(a[li]);
    qkv_node_free(a[li]);
    a[li] = NULL;
    int ni = leader_index(a, li);
    CHECK(ni >= 0 && qkv_node_id(a[ni]) != old_leader);
    int other = 3 - li - ni;
    OK(qkv_range(a[other], (const uint8_t *)"", 0, NULL, 0, &all, &r));
    CHECK(qkv_kvs_len(r) == 50);
    qkv_kvs_free(r);
    OK(qkv_put(a[other], (const uint8_t *)"after", 5, (const uint8_t *)"x", 1, NULL, NULL, NULL));

    /* restart the stopped node: it catches up */
    a[li] = start_a(argv[1], li);
    CHECK(a[li] != NULL);
    qkv_bytes v = {NULL, 0};
    OK(qkv_get_value(a[li], (const uint8_t *)"after", 5, false, &v));
    CHECK(v.len == 1 && v.ptr[0] == 'x');
    qkv_bytes_free(&v);
    qkv_range_options ser = {.size = sizeof ser, .prefix = true, .serializable = true};
    OK(qkv_range(a[li], (const uint8_t *)"", 0, NULL, 0, &ser, &r));
    CHECK(qkv_kvs_len(r) == 51);
    qkv_kvs_free(r);

    for (int i = 0; i < 3; i++) qkv_node_free(a[i]);
    qkv_node_free(b1);
    qkv_node_free(b2);

    /* cluster C: three nodes on one local network (in memory); the network is freed while
     * they run, which they survive (each holds its own reference) */
    static const char *cnames[3] = {"c1", "c2", "c3"};
    static const char *cpeers[3] = {"127.0.0.1:27441", "127.0.0.1:27442", "127.0.0.1:27443"};
    qkv_local_network *net = NULL;
    OK(qkv_local_network_new(&net));
    CHECK(qkv_local_network_new(NULL) == QKV_NULL_PARAMETER);
    qkv_node *c[3] = {NULL, NULL, NULL};
    for (int i = 2; i >= 0; i--) {
        qkv_config *cfg = config(argv[1], cnames[i], cpeers[i]);
        for (int j = 0; j < 3; j++) OK(qkv_config_add_initial_member(cfg, cnames[j], cpeers[j]));
        OK(qkv_config_set_local_network(cfg, net));
        CHECK(qkv_config_set_local_network(NULL, net) == QKV_NULL_PARAMETER);
        OK(qkv_node_start(cfg, &c[i]));
        qkv_config_free(cfg);
    }
    if (!c[0] || !c[1] || !c[2]) return 1;
    uint64_t before = 0, after = 0, deliveries = 0;
    OK(qkv_local_network_forwarded(net, &before));
    for (int i = 0; i < 3; i++) {
        int n = snprintf(key, sizeof key, "c%d", i);
        OK(qkv_put(c[i], (const uint8_t *)key, (size_t)n, (const uint8_t *)"1", 1, NULL, NULL, NULL));
    }
    OK(qkv_local_network_forwarded(net, &after));
    CHECK(after > before); /* the followers' puts reached the leader through the network */
    OK(qkv_local_network_deliveries(net, &deliveries));
    CHECK(deliveries >= after);
    CHECK(qkv_local_network_deliveries(NULL, &after) == QKV_NULL_PARAMETER);
    CHECK(qkv_local_network_forwarded(net, NULL) == QKV_NULL_PARAMETER);
    qkv_local_network_free(net);
    qkv_local_network_free(NULL);
    for (int i = 0; i < 3; i++) {
        OK(qkv_range(c[i], (const uint8_t *)"c", 1, NULL, 0, &all, &r));
        CHECK(qkv_kvs_len(r) == 3);
        qkv_kvs_free(r);
    }
    for (int i = 0; i < 3; i++) qkv_node_free(c[i]);
    printf("%d passed, %d failed\n", checks - failures, failures);
    return failures ? 1 : 0;
}
