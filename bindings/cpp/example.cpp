// A one-node quorumkv store in this process, used through the C++ wrapper:
// put/get/range, a watch, and a lease. Usage: example DATA_DIR [PEER_ADDR]
#include "quorumkv.hpp"

#include <chrono>
#include <iostream>

using namespace std::chrono_literals;

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " DATA_DIR [PEER_ADDR]\n";
        return 2;
    }
    try {
        // Alone, a node forms a one-node cluster. The node keeps a copy of the config.
        quorumkv::node node(quorumkv::config("n1", argv[1], argc > 2 ? argv[2] : "127.0.0.1:27541"));
        std::cout << "quorumkv " << quorumkv::version() << ", member " << std::hex << node.id() << std::dec << "\n";

        // Watch everything under "greet" from now on (pulled with next()).
        quorumkv::watch_options wo;
        wo.prefix = true;
        quorumkv::watch watch(node, "greet", {}, wo);

        // put, get, range
        auto put = node.put("greeting", "hello");
        node.put("greeting/fr", "bonjour");
        std::cout << "put at revision " << put.header.revision << "\n";
        if (auto kv = node.get("greeting")) std::cout << "get: " << kv->key << " = " << kv->value << "\n";

        quorumkv::range_options prefix;
        prefix.prefix = true;
        for (const quorumkv::key_value& kv : node.range("greet", {}, prefix))
            std::cout << "range: " << kv.key << " = " << kv.value << " (rev " << kv.mod_revision << ")\n";

        // The watch saw both puts.
        int seen = 0;
        while (seen < 2) {
            auto events = watch.next(5s);
            if (!events) break;  // timed out
            for (const quorumkv::event& e : *events) {
                std::cout << "watch: " << (e.type == quorumkv::event_type::put ? "PUT " : "DELETE ") << e.kv.key
                          << "\n";
                seen++;
            }
        }
        watch.cancel();

        // A lease: its key goes when the lease is revoked.
        auto lease = node.lease_grant(60s);
        quorumkv::put_options with_lease;
        with_lease.lease = lease.id;
        node.put("session", "alive", with_lease);
        {
            quorumkv::keepalive renew = node.lease_keep_alive(lease.id);  // renews while it lives
            std::cout << "lease " << lease.id << ": ttl " << node.lease_time_to_live(lease.id).ttl << "s\n";
        }
        node.lease_revoke(lease.id);
        std::cout << "after revoke, session " << (node.get("session") ? "exists" : "is gone") << "\n";

        // Errors are exceptions carrying the qkv_result code.
        try {
            node.put("", "no key");
        } catch (const quorumkv::error& e) {
            std::cout << "error " << e.code() << ": " << e.what() << "\n";
        }
        return 0;  // ~node stops the node
    } catch (const quorumkv::error& e) {
        std::cerr << "quorumkv error " << e.code() << ": " << e.what() << "\n";
        return 1;
    }
}
