#pragma once
// ember's own side of each HTTP connection, under cpp-httplib's routing.
//
// httplib 0.11 reads requests itself with a per-read timeout (a client that
// trickles one byte at a time keeps a thread forever), drops pipelined
// requests, gives no answer to some bad lengths and accepts ambiguous framing.
// GuardedServer takes each accepted socket instead: it admits the connection
// against caps (in total and per client address), reads every request whole
// under a deadline with the strict framing of http_framing.h, answers framing
// errors itself, and hands httplib one complete, normalized request at a time
// (a Content-Length body, no Transfer-Encoding) to route. Handler threads grow
// with the connections (ElasticThreadPool), so slow or idle connections never
// leave /health without a thread.

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <list>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include <httplib.h>

#include "server/http_framing.h"

namespace ember {

struct ConnectionPolicy {
  FramingLimits framing;
  int max_connections = 2048;          // open connections in total; beyond: 503 and close
  int max_connections_per_client = 0;  // per client address; 0: no cap
  double read_timeout_s = 10.0;        // a request's head must arrive within this of its first byte
  double keep_alive_timeout_s = 5.0;   // an idle kept-alive connection is closed after this
  double write_timeout_s = 30.0;       // a client that reads nothing for this long is dropped
  size_t max_requests_per_connection = 100000;  // then the connection closes (clients reconnect)
  // The methods a path answers ("GET, HEAD"), empty for an unknown path: requests with a method httplib
  // cannot route get 405 with this Allow (or 404) from here; the routes use it for the others.
  std::function<std::string(const std::string& path)> allowed_methods;
  uint64_t min_body_rate = 256 << 10;  // bytes/s a body must average, after the read timeout's allowance
};

// Open connections per client address, bounded in total and per address.
class ConnectionCounter {
 public:
  explicit ConnectionCounter(const ConnectionPolicy& policy) : policy_(policy) {}

  // Admits one more connection from `peer`; empty when admitted, else the reason to refuse.
  std::string admit(const std::string& peer);
  void release(const std::string& peer);
  int open() const;

 private:
  const ConnectionPolicy& policy_;
  mutable std::mutex mutex_;
  int total_ = 0;
  std::unordered_map<std::string, int> per_peer_;
};

// httplib's task queue with as many threads as there are tasks (up to a cap):
// a thread per connection, made when none is idle; idle ones end after a while.
class ElasticThreadPool : public httplib::TaskQueue {
 public:
  explicit ElasticThreadPool(size_t max_threads, size_t keep_threads = 8);
  ~ElasticThreadPool() override;
  void enqueue(std::function<void()> fn) override;
  void shutdown() override;

 private:
  void work(std::list<std::thread>::iterator self);
  void join_finished();

  const size_t max_threads_;
  const size_t keep_threads_;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> jobs_;
  std::list<std::thread> threads_;
  std::vector<std::thread> finished_;
  size_t idle_ = 0;
  bool shutdown_ = false;
};

class GuardedServer : public httplib::Server {
 public:
  explicit GuardedServer(ConnectionPolicy policy);
  int open_connections() const { return counter_.open(); }
  // After bind: httplib listens with a backlog of 5, so bursts of new
  // connections lose SYNs and wait a second for the retry. Linux takes a
  // second listen() as a new backlog.
  void widen_backlog();

 private:
  bool process_and_close_socket(socket_t sock) override;
  // Serves requests on an admitted connection until it closes.
  void serve_connection(socket_t sock);
  bool stopping() const { return svr_sock_ == INVALID_SOCKET; }

  ConnectionPolicy policy_;
  ConnectionCounter counter_;
};

}  // namespace ember
