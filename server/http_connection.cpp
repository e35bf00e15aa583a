#include "server/http_connection.h"

#include <arpa/inet.h>
#include <malloc.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include <spdlog/spdlog.h>

#include "server/openai_error.h"

namespace ember {
namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Waits for `events` on `fd` until `deadline`, in short slices so that a
// server stop is seen. True when the socket is ready.
bool wait_for(socket_t fd, short events, Clock::time_point deadline, const std::function<bool()>& stopping) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || (stopping && stopping())) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left, 100)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

enum class Read { kData, kClosed, kTimeout };

// Appends what the socket has to `buf`, waiting until `deadline`.
Read read_some(socket_t fd, std::string& buf, Clock::time_point deadline, const std::function<bool()>& stopping) {
  if (!wait_for(fd, POLLIN, deadline, stopping)) return stopping && stopping() ? Read::kClosed : Read::kTimeout;
  char chunk[16384];
  const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
  if (n <= 0) return Read::kClosed;
  buf.append(chunk, static_cast<size_t>(n));
  return Read::kData;
}

bool send_all(socket_t fd, const char* data, size_t size, double timeout_s) {
  const auto deadline = after(timeout_s);
  while (size > 0) {
    if (!wait_for(fd, POLLOUT, deadline, nullptr)) return false;
    const ssize_t n = ::send(fd, data, size, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    if (n <= 0) return false;
    data += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Half-closes and reads what the client still sends for a moment, so that an
// error response is not lost to a reset caused by unread request bytes.
void close_gracefully(socket_t fd) {
  ::shutdown(fd, SHUT_WR);
  std::string discard;
  const auto deadline = after(1.0);
  while (discard.size() < (1u << 20) && read_some(fd, discard, deadline, nullptr) == Read::kData) {
    if (discard.size() > (256u << 10)) discard.clear();
  }
  ::close(fd);
}

void address_of(socket_t fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int r = peer ? ::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                     : ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ip.clear();
  port = 0;
  if (r != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    ::inet_ntop(AF_INET, &a->sin_addr, text, sizeof text);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    ::inet_ntop(AF_INET6, &a->sin6_addr, text, sizeof text);
    port = ntohs(a->sin6_port);
  }
  ip = text;
}

// The stream httplib routes one request over: reads come from the request
// ember has already read whole; writes go to the socket.
class RequestStream : public httplib::Stream {
 public:
  RequestStream(socket_t fd, std::string request, double write_timeout_s)
      : fd_(fd), in_(std::move(request)), write_timeout_s_(write_timeout_s) {}

  bool is_readable() const override { return pos_ < in_.size(); }

  // Writable and the client still there: a closed connection reads as EOF
  // (a pipelined next request reads as data, and means it is still there).
  bool is_writable() const override {
    if (!wait_for(fd_, POLLOUT, after(write_timeout_s_), nullptr)) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    if (p.revents & (POLLERR | POLLHUP | POLLNVAL)) return false;
    char c;
    const ssize_t n = ::recv(fd_, &c, 1, MSG_PEEK | MSG_DONTWAIT);
    return n > 0 || (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK));
  }

  ssize_t read(char* ptr, size_t size) override {
    const size_t n = std::min(size, in_.size() - pos_);
    std::copy_n(in_.data() + pos_, n, ptr);
    pos_ += n;
    return static_cast<ssize_t>(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    return send_all(fd_, ptr, size, write_timeout_s_) ? static_cast<ssize_t>(size) : -1;
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address_of(fd_, false, ip, port); }
  socket_t socket() const override { return fd_; }

 private:
  socket_t fd_;
  std::string in_;
  size_t pos_ = 0;
  double write_timeout_s_;
};

// The methods httplib 0.11 routes; it answers 400 to any other (TRACE and CONNECT too).
bool routable(const std::string& method) {
  for (const char* m : {"GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"})
    if (method == m) return true;
  return false;
}

// Large requests in flight; when the last one ends, freed heap goes back to
// the system (glibc keeps it in the arenas otherwise: a burst of large
// requests would stay resident; bench/http_memory_bench.py).
std::atomic<int> large_requests{0};
constexpr size_t kLargeRequest = 256u << 10;

void large_request_done() {
  if (large_requests.fetch_sub(1) == 1) ::malloc_trim(0);
}

std::string error_json(int status, const std::string& message) {
  ApiError e{status, message, status >= 500 ? "server_error" : "invalid_request_error", std::nullopt, std::nullopt};
  if (status == 503) e = overloaded(503, message);
  return to_json(e).dump();
}

}  // namespace

// ---- ConnectionCounter ------------------------------------------------------------------

std::string ConnectionCounter::admit(const std::string& peer) {
  std::lock_guard lock(mutex_);
  if (total_ >= policy_.max_connections)
    return "too many open connections (--max-connections " + std::to_string(policy_.max_connections) + ")";
  int& mine = per_peer_[peer];
  if (policy_.max_connections_per_client > 0 && mine >= policy_.max_connections_per_client) {
    if (mine == 0) per_peer_.erase(peer);
    return "too many open connections from " + peer + " (--max-connections-per-client " +
           std::to_string(policy_.max_connections_per_client) + ")";
  }
  ++mine;
  ++total_;
  return {};
}

void ConnectionCounter::release(const std::string& peer) {
  std::lock_guard lock(mutex_);
  --total_;
  auto it = per_peer_.find(peer);
  if (it != per_peer_.end() && --it->second <= 0) per_peer_.erase(it);
}

int ConnectionCounter::open() const {
  std::lock_guard lock(mutex_);
  return total_;
}

// ---- ElasticThreadPool ------------------------------------------------------------------

ElasticThreadPool::ElasticThreadPool(size_t max_threads, size_t keep_threads)
    : max_threads_(std::max<size_t>(1, max_threads)), keep_threads_(keep_threads) {}

ElasticThreadPool::~ElasticThreadPool() { shutdown(); }

void ElasticThreadPool::enqueue(std::function<void()> fn) {
  join_finished();
  std::lock_guard lock(mutex_);
  jobs_.push_back(std::move(fn));
  if (idle_ < jobs_.size() && threads_.size() < max_threads_) {
    threads_.emplace_front();
    threads_.front() = std::thread(&ElasticThreadPool::work, this, threads_.begin());
  }
  cv_.notify_one();
}

void ElasticThreadPool::work(std::list<std::thread>::iterator self) {
  std::unique_lock lock(mutex_);
  while (true) {
    ++idle_;
    const bool woke = cv_.wait_for(lock, std::chrono::seconds(30), [&] { return shutdown_ || !jobs_.empty(); });
    --idle_;
    if (!jobs_.empty()) {
      std::function<void()> job = std::move(jobs_.front());
      jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
      continue;
    }
    if (shutdown_ || (!woke && threads_.size() > keep_threads_)) break;
  }
  // Done: hand this thread's handle over to be joined by the next caller.
  if (!shutdown_) {
    finished_.push_back(std::move(*self));
    threads_.erase(self);
  }
}

void ElasticThreadPool::join_finished() {
  std::vector<std::thread> done;
  {
    std::lock_guard lock(mutex_);
    done.swap(finished_);
  }
  for (std::thread& t : done) t.join();
}

void ElasticThreadPool::shutdown() {
  {
    std::lock_guard lock(mutex_);
    if (shutdown_ && threads_.empty()) return;
    shutdown_ = true;
  }
  cv_.notify_all();
  // With shutdown_ set no worker touches threads_ any more.
  for (std::thread& t : threads_) t.join();
  threads_.clear();
  join_finished();
}

// ---- GuardedServer ----------------------------------------------------------------------

GuardedServer::GuardedServer(ConnectionPolicy policy) : policy_(policy), counter_(policy_) {
  // Refusals need a thread too: a few beyond the connection cap.
  const size_t threads = static_cast<size_t>(policy_.max_connections) + 32;
  new_task_queue = [threads] { return new ElasticThreadPool(threads); };
  // What httplib's Keep-Alive response header announces.
  set_keep_alive_max_count(policy_.max_requests_per_connection);
  set_keep_alive_timeout(static_cast<time_t>(std::max(1.0, policy_.keep_alive_timeout_s)));
}

void GuardedServer::widen_backlog() {
  const socket_t sock = svr_sock_;
  if (sock != INVALID_SOCKET) ::listen(sock, SOMAXCONN);
}

bool GuardedServer::process_and_close_socket(socket_t sock) {
  std::string peer;
  int port = 0;
  address_of(sock, true, peer, port);
  const std::string refused = counter_.admit(peer);
  if (!refused.empty()) {
    spdlog::debug("refused a connection from {}: {}", peer, refused);
    const std::string response = framing_error_response(503, error_json(503, refused), "Retry-After: 1\r\n");
    send_all(sock, response.data(), response.size(), 1.0);
    close_gracefully(sock);
    return true;
  }
  serve_connection(sock);
  counter_.release(peer);
  return true;
}

void GuardedServer::serve_connection(socket_t sock) {
  const int one = 1;
  ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);  // every SSE chunk leaves at once
  const std::function<bool()> stop = [this] { return stopping(); };
  const auto refuse = [&](const FramingError& e, const std::string& extra_fields = "") {
    const std::string response = framing_error_response(e.status, error_json(e.status, e.message), extra_fields);
    send_all(sock, response.data(), response.size(), policy_.write_timeout_s);
    close_gracefully(sock);
  };
  std::string buf;  // bytes read and not yet part of a served request (pipelining)
  for (size_t served = 0;; ++served) {
    const bool first = served == 0;
    // The next request's first byte: a new connection gets the read timeout, a kept-alive one the idle timeout.
    if (buf.empty() &&
        read_some(sock, buf, after(first ? policy_.read_timeout_s : policy_.keep_alive_timeout_s), stop) != Read::kData)
      break;
    // Its head, whole, within the read timeout of that byte.
    const auto head_deadline = after(policy_.read_timeout_s);
    Framed<RequestHead> head = parse_request_head(buf, policy_.framing);
    while (head.state == Framed<RequestHead>::State::kIncomplete) {
      const size_t had = buf.size();
      const Read r = read_some(sock, buf, head_deadline, stop);
      if (r == Read::kTimeout) {
        head = Framed<RequestHead>::failed(408, "the request head did not arrive within " +
                                                    std::to_string(static_cast<int>(policy_.read_timeout_s)) + " s");
      } else if (r == Read::kClosed) {
        ::shutdown(sock, SHUT_RDWR);
        ::close(sock);
        return;
      } else {
        // Reparse only when a line ended (at most max_header_fields + 1 times) or a size limit was just crossed:
        // a head sent a byte per packet costs linear work, not quadratic.
        const auto crossed = [&](size_t limit) { return had <= limit && buf.size() > limit; };
        if (buf.find('\n', had) != std::string::npos || crossed(policy_.framing.max_request_line) ||
            crossed(policy_.framing.max_head_bytes))
          head = parse_request_head(buf, policy_.framing);
      }
    }
    if (head.is_error()) return refuse(head.error);
    RequestHead& h = head.value;
    buf.erase(0, h.head_bytes);
    if (!routable(h.method)) {
      const std::string path = h.target.substr(0, h.target.find('?'));
      const std::string allowed = policy_.allowed_methods ? policy_.allowed_methods(path) : std::string();
      if (allowed.empty()) return refuse({404, route_not_found(h.method, path).message});
      return refuse({405, "method " + h.method + " is not allowed on " + path + " (allowed: " + allowed + ")"},
                    "Allow: " + allowed + "\r\n");
    }
    // Its body, at a minimum average rate after the read timeout's allowance.
    if (h.expect_continue && buf.empty() && (h.chunked || h.content_length > 0)) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      send_all(sock, kContinue.data(), kContinue.size(), policy_.write_timeout_s);
    }
    const uint64_t expected = h.chunked ? policy_.framing.max_body_bytes : h.content_length;
    const auto body_deadline = after(policy_.read_timeout_s + static_cast<double>(expected) / policy_.min_body_rate);
    const FramingError late{408, "the request body did not arrive in time"};
    std::string request;
    if (h.chunked) {
      ChunkedDecoder decoder(policy_.framing.max_body_bytes);
      while (true) {
        const ChunkedDecoder::Step step = decoder.feed(buf);
        buf.erase(0, step.consumed);
        if (step.state == ChunkedDecoder::Step::State::kError) return refuse(step.error);
        if (step.state == ChunkedDecoder::Step::State::kComplete) break;
        const Read r = read_some(sock, buf, body_deadline, stop);
        if (r == Read::kTimeout) return refuse(late);
        if (r == Read::kClosed) {
          ::close(sock);
          return;
        }
      }
      request = normalized_head(h, decoder.body().size()) + decoder.body();
    } else {
      while (buf.size() < h.content_length) {
        const Read r = read_some(sock, buf, body_deadline, stop);
        if (r == Read::kTimeout) return refuse(late);
        if (r == Read::kClosed) {
          ::close(sock);
          return;
        }
      }
      request = normalized_head(h, h.content_length);
      request.append(buf, 0, h.content_length);
      buf.erase(0, h.content_length);
    }
    // httplib routes it and writes the response.
    const bool close_after = !h.keep_alive || stopping() || served + 1 >= policy_.max_requests_per_connection;
    const bool large = request.size() >= kLargeRequest;
    if (large) large_requests.fetch_add(1);
    bool connection_closed = false;
    {
      RequestStream stream(sock, std::move(request), policy_.write_timeout_s);
      process_request(stream, close_after, connection_closed, nullptr);
    }
    if (large) large_request_done();
    if (close_after || connection_closed) break;
  }
  ::shutdown(sock, SHUT_RDWR);
  ::close(sock);
}

}  // namespace ember
