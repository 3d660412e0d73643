/* One C process hosts a whole 3-node quorumkv cluster.
 *
 * It writes keys, stops the leader, shows the new leader and that every key survived,
 * then restarts the stopped node from its data dir and shows it catch up.
 *
 *     cluster [DATA_DIR [BASE_PORT]]     (defaults: ./cluster-data 7101)
 *
 * It needs only the installed header and library:
 *     cc -std=c11 cluster.c $(pkg-config --cflags --libs quorumkv) -o cluster          (shared)
 *     cc -std=c11 cluster.c $(pkg-config --cflags --libs quorumkv-static) -o cluster   (static)
 */
#define _POSIX_C_SOURCE 200809L
#include <quorumkv.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NODES 3
#define KEYS 100

static const char *names[NODES] = {"machine1", "machine2", "machine3"};
static char peers[NODES][32];
static char dirs[NODES][1024];

/* Prints what failed, with the library's detail text, and exits. */
static void check(qkv_result rc, const char *what) {
    if (rc == QKV_OK) return;
    char detail[512];
    qkv_last_error(detail, sizeof detail);
    fprintf(stderr, "%s failed: %s (%s)\n", what, qkv_result_message(rc), detail);
    exit(1);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Starts member i of the static 3-node cluster (any start order works). */
static qkv_node *start_member(int i) {
    qkv_config *cfg = NULL;
    check(qkv_config_new(names[i], dirs[i], peers[i], &cfg), "qkv_config_new");
    for (int j = 0; j < NODES; j++) check(qkv_config_add_initial_member(cfg, names[j], peers[j]), "add member");
    qkv_node *node = NULL;
    check(qkv_node_start(cfg, &node), "qkv_node_start");
    qkv_config_free(cfg);
    return node;
}

/* The index of the node that is leader, skipping `skip`; waits up to 5 s. */
static int find_leader(qkv_node *nodes[NODES], int skip) {
    for (int tries = 0; tries < 200; tries++) {
        for (int i = 0; i < NODES; i++) {
            qkv_status st = {.size = sizeof st};
            if (i != skip && nodes[i] && qkv_node_status(nodes[i], &st) == QKV_OK && st.is_leader) return i;
        }
        sleep_ms(25);
    }
    fprintf(stderr, "no leader after 5 s\n");
    exit(1);
}

/* Counts the keys under "key/" as `node` holds them locally (a serializable read). */
static size_t local_key_count(qkv_node *node) {
    qkv_range_options opts = {.size = sizeof opts, .prefix = true, .count_only = true, .serializable = true};
    qkv_kvs *kvs = NULL;
    check(qkv_range(node, (const uint8_t *)"key/", 4, NULL, 0, &opts, &kvs), "qkv_range");
    size_t count = (size_t)qkv_kvs_count(kvs);
    qkv_kvs_free(kvs);
    return count;
}

int main(int argc, char **argv) {
    const char *base = argc > 1 ? argv[1] : "./cluster-data";
    int port = argc > 2 ? atoi(argv[2]) : 7101;
    for (int i = 0; i < NODES; i++) {
        snprintf(peers[i], sizeof peers[i], "127.0.0.1:%d", port + i);
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", base, names[i]);
    }
    printf("quorumkv %s (C ABI %u)\n", qkv_version(), qkv_abi_version());

    qkv_node *nodes[NODES];
    for (int i = 0; i < NODES; i++) nodes[i] = start_member(i);

    /* Any node takes any request: followers forward writes to the leader. */
    for (int k = 0; k < KEYS; k++) {
        char key[32], value[32];
        int kl = snprintf(key, sizeof key, "key/%03d", k), vl = snprintf(value, sizeof value, "value %d", k);
        check(qkv_put(nodes[k % NODES], (const uint8_t *)key, (size_t)kl, (const uint8_t *)value, (size_t)vl, NULL,
                      NULL, NULL),
              "qkv_put");
    }
    int leader = find_leader(nodes, -1);
    qkv_status st = {.size = sizeof st};
    check(qkv_node_status(nodes[leader], &st), "qkv_node_status");
    printf("wrote %d keys; leader is %s (term %llu, revision %lld)\n", KEYS, names[leader],
           (unsigned long long)st.term, (long long)st.revision);

    /* Stop the leader: it hands leadership to another member first. */
    check(qkv_node_stop(nodes[leader]), "qkv_node_stop");
    qkv_node_free(nodes[leader]);
    nodes[leader] = NULL;
    int next = find_leader(nodes, leader);
    check(qkv_node_status(nodes[next], &st), "qkv_node_status");
    printf("stopped %s; new leader is %s (term %llu)\n", names[leader], names[next], (unsigned long long)st.term);

    /* Every key survived, and the cluster still takes writes. */
    qkv_range_options all = {.size = sizeof all, .prefix = true, .count_only = true};
    qkv_kvs *kvs = NULL;
    check(qkv_range(nodes[next], (const uint8_t *)"key/", 4, NULL, 0, &all, &kvs), "qkv_range");
    long long survived = qkv_kvs_count(kvs);
    qkv_kvs_free(kvs);
    printf("%lld of %d keys readable from %s\n", survived, KEYS, names[next]);
    check(qkv_put(nodes[next], (const uint8_t *)"key/late", 8, (const uint8_t *)"written while one was down", 26,
                  NULL, NULL, NULL),
          "qkv_put");

    /* Restart the stopped node from its data dir: it rejoins and catches up. */
    nodes[leader] = start_member(leader);
    size_t caught_up = 0;
    for (int tries = 0; tries < 200 && (caught_up = local_key_count(nodes[leader])) < KEYS + 1; tries++) sleep_ms(25);
    printf("restarted %s: it holds %zu of %d keys\n", names[leader], caught_up, KEYS + 1);

    for (int i = 0; i < NODES; i++) qkv_node_free(nodes[i]); /* stops each node, then frees it */
    if (survived != KEYS || caught_up != KEYS + 1) {
        fprintf(stderr, "keys were lost\n");
        return 1;
    }
    printf("ok\n");
    return 0;
}
