#include "engine/parallel/tcp_group.h"

#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <optional>

#include <spdlog/spdlog.h>

namespace ember {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint32_t kMagic = 0x524d4245;  // "EBMR"
constexpr uint32_t kVersion = 1;

std::optional<Clock::time_point> after(double seconds) {
  if (seconds <= 0) return std::nullopt;
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// Waits for `events`; false on timeout. No deadline: waits as long as it takes.
bool wait_for(int fd, short events, std::optional<Clock::time_point> deadline) {
  while (true) {
    int ms = -1;
    if (deadline) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(*deadline - Clock::now()).count();
      if (left <= 0) return false;
      ms = static_cast<int>(std::min<int64_t>(left, 1000));
    }
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, ms);
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return false;
  }
}

enum class Io { kOk, kClosed, kTimeout };

Io read_all(int fd, void* data, size_t n, std::optional<Clock::time_point> deadline) {
  auto* p = static_cast<char*>(data);
  while (n > 0) {
    if (!wait_for(fd, POLLIN, deadline)) return Io::kTimeout;
    const ssize_t got = ::recv(fd, p, n, 0);
    if (got < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (got <= 0) return Io::kClosed;
    p += got;
    n -= static_cast<size_t>(got);
  }
  return Io::kOk;
}

Io write_all(int fd, const void* data, size_t n, std::optional<Clock::time_point> deadline) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    if (!wait_for(fd, POLLOUT, deadline)) return Io::kTimeout;
    const ssize_t put = ::send(fd, p, n, MSG_NOSIGNAL);
    if (put < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (put <= 0) return Io::kClosed;
    p += put;
    n -= static_cast<size_t>(put);
  }
  return Io::kOk;
}

void tune(int fd) {
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

struct Hello {
  uint32_t magic = kMagic;
  uint32_t version = kVersion;
  int32_t rank = 0;
  int32_t size = 0;
};

std::string describe(Io io) { return io == Io::kTimeout ? "timed out" : "connection closed"; }

class TcpCommunicator final : public Communicator {
 public:
  explicit TcpCommunicator(TcpGroup& group) : group_(group) {}
  int rank() const override { return group_.rank(); }
  int size() const override { return group_.size(); }
  void all_reduce_sum(float* data, int64_t n) override { group_.all_reduce_sum(data, n); }
  void all_gather(const float* data, int64_t n, float* out) override { group_.all_gather(data, n, out); }

 private:
  TcpGroup& group_;
};

// Rank 0's side of the meeting: accepts size - 1 ranks, each saying who it is.
Result<std::vector<int>> accept_ranks(const Rendezvous& where) {
  const int listener = ::socket(AF_INET6, SOCK_STREAM, 0);
  if (listener < 0) return Error{std::string("tensor parallelism: socket: ") + std::strerror(errno)};
  const int one = 1, zero = 0;
  ::setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  ::setsockopt(listener, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);  // IPv4 too
  sockaddr_in6 addr{};
  addr.sin6_family = AF_INET6;
  addr.sin6_addr = in6addr_any;
  addr.sin6_port = htons(static_cast<uint16_t>(where.master_port));
  if (::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(listener, 64) != 0) {
    const std::string why = std::strerror(errno);
    ::close(listener);
    return Error{"tensor parallelism: cannot listen on --master-port " + std::to_string(where.master_port) + ": " +
                 why};
  }
  spdlog::info("tensor parallelism: rank 0 of {} waiting for the other ranks on port {}", where.nnodes,
               where.master_port);
  std::vector<int> links(static_cast<size_t>(where.nnodes), -1);
  int joined = 1;
  const auto deadline = after(where.join_timeout_s);
  while (joined < where.nnodes) {
    if (!wait_for(listener, POLLIN, deadline)) break;
    const int fd = ::accept(listener, nullptr, nullptr);
    if (fd < 0) continue;
    tune(fd);
    Hello hello;
    if (read_all(fd, &hello, sizeof hello, after(10)) != Io::kOk || hello.magic != kMagic ||
        hello.version != kVersion || hello.size != where.nnodes || hello.rank < 1 || hello.rank >= where.nnodes ||
        links[static_cast<size_t>(hello.rank)] >= 0) {
      spdlog::warn("tensor parallelism: refused a connection that is not a new rank of this group (rank {}, size {})",
                   hello.rank, hello.size);
      ::close(fd);
      continue;
    }
    links[static_cast<size_t>(hello.rank)] = fd;
    ++joined;
  }
  ::close(listener);
  if (joined < where.nnodes) {
    for (int fd : links)
      if (fd >= 0) ::close(fd);
    return Error{"tensor parallelism: only " + std::to_string(joined) + " of " + std::to_string(where.nnodes) +
                 " ranks arrived within " + std::to_string(static_cast<int>(where.join_timeout_s)) + " s"};
  }
  for (size_t r = 1; r < links.size(); ++r) {
    const Hello ack{kMagic, kVersion, 0, where.nnodes};
    if (write_all(links[r], &ack, sizeof ack, after(10)) != Io::kOk)
      return Error{"tensor parallelism: rank " + std::to_string(r) + " left during the meeting"};
  }
  return links;
}

// A rank's side: connects to rank 0, retrying until it listens.
Result<int> connect_rank0(const Rendezvous& where) {
  const auto deadline = after(where.join_timeout_s);
  std::string last = "not tried";
  while (!deadline || Clock::now() < *deadline) {
    addrinfo hints{};
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    const int gai = ::getaddrinfo(where.master_addr.c_str(), std::to_string(where.master_port).c_str(), &hints, &found);
    if (gai != 0) {
      last = ::gai_strerror(gai);
    } else {
      for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
        const int fd = ::socket(a->ai_family, a->ai_socktype, a->ai_protocol);
        if (fd < 0) continue;
        if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0) {
          ::freeaddrinfo(found);
          tune(fd);
          const Hello hello{kMagic, kVersion, where.node_rank, where.nnodes};
          Hello ack;
          if (write_all(fd, &hello, sizeof hello, after(10)) != Io::kOk ||
              read_all(fd, &ack, sizeof ack, deadline) != Io::kOk || ack.magic != kMagic || ack.size != where.nnodes) {
            ::close(fd);
            return Error{"tensor parallelism: rank 0 at " + where.master_addr + ":" +
                         std::to_string(where.master_port) + " did not take this rank into its group"};
          }
          return fd;
        }
        last = std::strerror(errno);
        ::close(fd);
      }
      ::freeaddrinfo(found);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return Error{"tensor parallelism: cannot reach rank 0 at " + where.master_addr + ":" +
               std::to_string(where.master_port) + " within " + std::to_string(static_cast<int>(where.join_timeout_s)) +
               " s (" + last + ")"};
}

}  // namespace

TcpGroup::TcpGroup(int rank, int size, double collective_timeout_s)
    : rank_(rank), size_(size), collective_timeout_s_(collective_timeout_s) {
  comm_ = std::make_unique<TcpCommunicator>(*this);
}

Result<std::unique_ptr<TcpGroup>> TcpGroup::join(const Rendezvous& where) {
  if (where.nnodes < 1) return Error{"tensor parallelism over TCP needs --nnodes of 1 or more"};
  if (where.node_rank < 0 || where.node_rank >= where.nnodes)
    return Error{"--node-rank " + std::to_string(where.node_rank) + " is outside [0, " + std::to_string(where.nnodes) +
                 ")"};
  if (where.master_port < 1 || where.master_port > 65535) return Error{"--master-port must be in [1, 65535]"};
  std::unique_ptr<TcpGroup> group(new TcpGroup(where.node_rank, where.nnodes, where.collective_timeout_s));
  if (where.nnodes == 1) {
    group->links_ = {-1};  // a group of one (tests): no one to meet
  } else if (where.node_rank == 0) {
    auto links = accept_ranks(where);
    if (!links) return links.error();
    group->links_ = std::move(*links);
    group->watcher_ = std::thread([g = group.get()] { g->watch_links(); });
  } else {
    auto fd = connect_rank0(where);
    if (!fd) return fd.error();
    group->links_ = {*fd};
  }
  spdlog::info("tensor parallelism: rank {} of {} joined over TCP", where.node_rank, where.nnodes);
  return group;
}

TcpGroup::~TcpGroup() {
  stopping_.store(true);
  if (watcher_.joinable()) watcher_.join();
  if (rank_ == 0) {
    const uint64_t stop = 0;
    for (size_t r = 1; r < links_.size(); ++r) write_all(links_[r], &stop, sizeof stop, after(5));
  }
  for (int fd : links_)
    if (fd >= 0) ::close(fd);
}

void TcpGroup::watch_links() {
  std::vector<pollfd> fds;
  for (size_t r = 1; r < links_.size(); ++r) fds.push_back({links_[r], POLLRDHUP, 0});
  while (!stopping_.load()) {
    for (pollfd& p : fds) p.revents = 0;
    if (::poll(fds.data(), fds.size(), 200) <= 0) continue;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (stopping_.load()) return;
      if (fds[i].revents & (POLLRDHUP | POLLHUP | POLLERR))
        process_group_failure("rank " + std::to_string(i + 1) + " closed its connection (it died or was stopped)");
    }
  }
}

int TcpGroup::local_rank() const {
  const char* v = std::getenv("LOCAL_RANK");
  return v != nullptr ? std::atoi(v) : 0;
}

void TcpGroup::broadcast_bytes(std::string& bytes) {
  const auto deadline = after(collective_timeout_s_);
  uint64_t n = bytes.size();
  if (rank_ == 0) {
    for (size_t r = 1; r < links_.size(); ++r) {
      Io io = write_all(links_[r], &n, sizeof n, deadline);
      if (io == Io::kOk) io = write_all(links_[r], bytes.data(), bytes.size(), deadline);
      if (io != Io::kOk) fail("broadcast", "sending to", r, static_cast<int>(io));
    }
    return;
  }
  Io io = read_all(links_[0], &n, sizeof n, deadline);
  if (io == Io::kOk && n > (uint64_t{1} << 32)) process_group_failure("rank 0 announced " + std::to_string(n) + " bytes");
  bytes.assign(n, '\0');
  if (io == Io::kOk) io = read_all(links_[0], bytes.data(), bytes.size(), deadline);
  if (io != Io::kOk) fail("broadcast", "receiving from", 0, static_cast<int>(io));
}

void TcpGroup::broadcast_step(const ForwardInputs& in) {
  const std::string step = pack_step(in);
  const uint64_t bytes = step.size();
  const auto deadline = after(collective_timeout_s_);
  for (size_t r = 1; r < links_.size(); ++r) {
    Io io = write_all(links_[r], &bytes, sizeof bytes, deadline);
    if (io == Io::kOk) io = write_all(links_[r], step.data(), step.size(), deadline);
    if (io != Io::kOk) process_group_failure("sending a step to rank " + std::to_string(r) + ": " + describe(io));
  }
}

bool TcpGroup::receive_step(ForwardInputs& in) {
  uint64_t bytes = 0;
  // Waiting for the next step has no deadline: an idle server sends none.
  Io io = read_all(links_[0], &bytes, sizeof bytes, std::nullopt);
  if (io != Io::kOk) process_group_failure("rank 0 closed the connection (it died or was stopped)");
  if (bytes == 0) return false;  // rank 0 stops
  if (bytes > (uint64_t{1} << 32))
    process_group_failure("rank 0 announced a step of " + std::to_string(bytes) + " bytes");
  std::string step(bytes, '\0');
  io = read_all(links_[0], step.data(), step.size(), after(collective_timeout_s_));
  if (io != Io::kOk) process_group_failure("receiving a step from rank 0: " + describe(io));
  if (!unpack_step(step, in)) process_group_failure("rank 0 sent a step that does not unpack");
  return true;
}

void TcpGroup::fail(const char* collective, const char* what, size_t rank, int io) const {
  const Io why = static_cast<Io>(io);
  process_group_failure(std::string(collective) + ": " + what + " rank " + std::to_string(rank) + ": " + describe(why) +
                        (why == Io::kTimeout
                             ? " after " + std::to_string(static_cast<int>(collective_timeout_s_)) + " s"
                             : std::string()));
}

void TcpGroup::all_reduce_sum(float* data, int64_t n) {
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  const auto deadline = after(collective_timeout_s_);
  const auto fail = [&](const char* what, size_t r, Io io) { this->fail("all-reduce", what, r, static_cast<int>(io)); };
  if (rank_ != 0) {
    if (Io io = write_all(links_[0], data, bytes, deadline); io != Io::kOk) fail("sending to", 0, io);
    if (Io io = read_all(links_[0], data, bytes, deadline); io != Io::kOk) fail("receiving from", 0, io);
    return;
  }
  // Rank 0 sums in rank order: ((x0 + x1) + x2) + ..., the thread group's order.
  scratch_.resize(static_cast<size_t>(n));
  for (size_t r = 1; r < links_.size(); ++r) {
    if (Io io = read_all(links_[r], scratch_.data(), bytes, deadline); io != Io::kOk) fail("receiving from", r, io);
    for (int64_t i = 0; i < n; ++i) data[i] += scratch_[static_cast<size_t>(i)];
  }
  for (size_t r = 1; r < links_.size(); ++r)
    if (Io io = write_all(links_[r], data, bytes, deadline); io != Io::kOk) fail("sending to", r, io);
}

void TcpGroup::all_gather(const float* data, int64_t n, float* out) {
  // Through rank 0 too: every rank's n floats go there, the whole goes back.
  const size_t bytes = static_cast<size_t>(n) * sizeof(float);
  const auto deadline = after(collective_timeout_s_);
  const auto fail = [&](const char* what, size_t r, Io io) { this->fail("all-gather", what, r, static_cast<int>(io)); };
  if (rank_ != 0) {
    if (Io io = write_all(links_[0], data, bytes, deadline); io != Io::kOk) fail("sending to", 0, io);
    if (Io io = read_all(links_[0], out, bytes * static_cast<size_t>(size_), deadline); io != Io::kOk)
      fail("receiving from", 0, io);
    return;
  }
  std::copy(data, data + n, out);
  for (size_t r = 1; r < links_.size(); ++r)
    if (Io io = read_all(links_[r], out + r * static_cast<size_t>(n), bytes, deadline); io != Io::kOk)
      fail("receiving from", r, io);
  for (size_t r = 1; r < links_.size(); ++r)
    if (Io io = write_all(links_[r], out, bytes * static_cast<size_t>(size_), deadline); io != Io::kOk)
      fail("sending to", r, io);
}

}  // namespace ember
