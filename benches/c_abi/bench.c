/* The C side of `cargo bench --bench c_abi`: one node, then the same put/get workload as
 * the Rust side (benches/c_abi.rs), through the C ABI. Prints "<workload> <ops/s>" lines.
 *
 *     bench DATA_DIR PEER_ADDR [GET_THREADS]   (GET_THREADS: 1 to 16, default 2)
 *     bench --idle DATA_DIR BASE_PORT NODES   (RSS of a process hosting NODES idle nodes) */
#define _POSIX_C_SOURCE 200809L
#include <quorumkv.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Keep in step with benches/c_abi.rs. */
#define PUT_THREADS 16
#define PUTS_PER_THREAD 1000
#define GET_THREADS_MAX 16
#define LOCAL_GETS_PER_THREAD 1000000
#define LINEAR_GETS_PER_THREAD 50000
#define KEYS (PUT_THREADS * PUTS_PER_THREAD)
#define VALUE_BYTES 256

static qkv_node *node;
static uint8_t value[VALUE_BYTES];
/* Formatted before the clock starts, as on the Rust side: the loops time the calls. */
static char keys[KEYS][16];
static size_t key_lens[KEYS];

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}


static void must(qkv_result rc, const char *what) {
    if (rc != QKV_OK) {
        fprintf(stderr, "%s: %s\n", what, qkv_result_message(rc));
        exit(1);
    }
}

static void *putter(void *arg) {
    unsigned t = (unsigned)(size_t)arg;
    for (unsigned i = 0; i < PUTS_PER_THREAD; i++) {
        unsigned k = t * PUTS_PER_THREAD + i;
        must(qkv_put(node, (const uint8_t *)keys[k], key_lens[k], value, VALUE_BYTES, NULL, NULL, NULL), "qkv_put");
    }
    return NULL;
}

struct getter_args {
    unsigned thread, count;
    bool serializable;
};

static void *getter(void *arg) {
    const struct getter_args *a = arg;
    qkv_range_options opts = {.size = sizeof opts, .serializable = a->serializable};
    size_t bytes = 0;
    for (unsigned i = 0; i < a->count; i++) {
        unsigned k = (a->thread * 7919u + i) % KEYS;
        qkv_kvs *kvs = NULL;
        must(qkv_get(node, (const uint8_t *)keys[k], key_lens[k], &opts, &kvs), "qkv_get");
        qkv_kv kv;
        if (qkv_kvs_get(kvs, 0, &kv) == QKV_OK) bytes += kv.value_len;
        qkv_kvs_free(kvs);
    }
    return (void *)bytes;
}

static double run(void *(*fn)(void *), unsigned threads, void *args, size_t arg_size, unsigned ops) {
    pthread_t ids[PUT_THREADS > GET_THREADS_MAX ? PUT_THREADS : GET_THREADS_MAX];
    double start = now_s();
    for (unsigned t = 0; t < threads; t++)
        pthread_create(&ids[t], NULL, fn, args ? (char *)args + t * arg_size : (void *)(size_t)t);
    for (unsigned t = 0; t < threads; t++) pthread_join(ids[t], NULL);
    return ops / (now_s() - start);
}

/* Resident set of this process, in KiB. */
static long rss_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kib = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmRSS:", 6) == 0) kib = strtol(line + 6, NULL, 10);
    if (f) fclose(f);
    return kib;
}

/* Hosts `count` nodes of one cluster, lets them idle for 20 s, prints the RSS. */
static int idle(const char *dir, int port, int count) {
    char names[3][16], peers[3][32], dirs[3][1024];
    qkv_node *nodes[3];
    for (int i = 0; i < count; i++) {
        snprintf(names[i], sizeof names[i], "i%d", i);
        snprintf(peers[i], sizeof peers[i], "127.0.0.1:%d", port + i);
        snprintf(dirs[i], sizeof dirs[i], "%s/%s", dir, names[i]);
    }
    for (int i = count - 1; i >= 0; i--) {
        qkv_config *cfg = NULL;
        must(qkv_config_new(names[i], dirs[i], peers[i], &cfg), "qkv_config_new");
        for (int j = 0; count > 1 && j < count; j++) must(qkv_config_add_initial_member(cfg, names[j], peers[j]), "member");
        must(qkv_node_start(cfg, &nodes[i]), "qkv_node_start");
        qkv_config_free(cfg);
    }
    must(qkv_put(nodes[0], (const uint8_t *)"k", 1, value, VALUE_BYTES, NULL, NULL, NULL), "qkv_put");
    struct timespec ts = {20, 0};
    nanosleep(&ts, NULL);
    printf("idle_rss_kib_%d_nodes %ld\n", count, rss_kib());
    for (int i = 0; i < count; i++) qkv_node_free(nodes[i]);
    return 0;
}

int main(int argc, char **argv) {
    if (argc == 5 && strcmp(argv[1], "--idle") == 0) {
        int count = atoi(argv[4]);
        return count >= 1 && count <= 3 ? idle(argv[2], atoi(argv[3]), count) : 2;
    }
    if (argc < 3) {
        fprintf(stderr, "usage: bench DATA_DIR PEER_ADDR\n");
        return 2;
    }
    memset(value, 'v', sizeof value);
    for (unsigned k = 0; k < KEYS; k++) key_lens[k] = (size_t)snprintf(keys[k], sizeof keys[k], "key/%08u", k);
    qkv_config *cfg = NULL;
    must(qkv_config_new("bench", argv[1], argv[2], &cfg), "qkv_config_new");
    must(qkv_node_start(cfg, &node), "qkv_node_start");
    qkv_config_free(cfg);

    printf("put %.0f\n", run(putter, PUT_THREADS, NULL, 0, KEYS));
    unsigned get_threads = argc > 3 ? (unsigned)atoi(argv[3]) : 2;
    if (get_threads < 1 || get_threads > GET_THREADS_MAX) return 2;
    struct getter_args local[GET_THREADS_MAX], linear[GET_THREADS_MAX];
    for (unsigned t = 0; t < get_threads; t++) {
        local[t] = (struct getter_args){t, LOCAL_GETS_PER_THREAD, true};
        linear[t] = (struct getter_args){t, LINEAR_GETS_PER_THREAD, false};
    }
    printf("get_serializable %.0f\n", run(getter, get_threads, local, sizeof local[0], get_threads * LOCAL_GETS_PER_THREAD));
    printf("get_linearizable %.0f\n", run(getter, get_threads, linear, sizeof linear[0], get_threads * LINEAR_GETS_PER_THREAD));
    qkv_node_free(node);
    return 0;
}
