// Tensor parallelism on the CPU (engine/parallel): the shared-memory
// all-reduce against a sequential sum and the all-gather (threads, TCP, MPI
// processes), the shard arithmetic and its errors, quantized slices against
// the dequantized matrix, and the model split over 2, 3 and 4 ranks against
// the unsplit one: logits within float32 rounding, and greedy tokens identical
// through the engine, with the LM head vocab-parallel (a vocabulary the ranks
// do not divide too) or replicated; the collective watchdog over fake
// communicators.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

#include <spdlog/spdlog.h>

#include "engine/engine.h"
#include "engine/model_runner.h"
#include "engine/parallel/collective_watchdog.h"
#include "engine/parallel/mpi_group.h"
#include "engine/parallel/process_group.h"
#include "engine/parallel/shard.h"
#include "engine/parallel/tcp_group.h"
#include "engine/parallel/tensor_parallel_runner.h"
#include "engine/parallel/thread_group.h"
#include "kernels/quant/quant_blocks.h"
#include "models/formats/gguf.h"
#include "tests/engine_test_util.h"

namespace ember {
namespace {

TEST(ThreadGroup, AllReduceSumsInRankOrderOnEveryRank) {
  for (int n : {1, 2, 3, 4}) {
    ThreadGroup group(n);
    for (int64_t len : {int64_t{1}, int64_t{3}, int64_t{1000}, int64_t{4099}}) {
      std::vector<std::vector<float>> data(static_cast<size_t>(n));
      std::mt19937 rng(static_cast<uint32_t>(n * 100 + len));
      std::normal_distribution<float> dist(0.0f, 1.0f);
      for (auto& d : data)
        for (int64_t i = 0; i < len; ++i) d.push_back(dist(rng));
      std::vector<float> want(static_cast<size_t>(len), 0.0f);
      for (int64_t i = 0; i < len; ++i)
        for (int r = 0; r < n; ++r)
          want[static_cast<size_t>(i)] += data[static_cast<size_t>(r)][static_cast<size_t>(i)];
      // Three calls in a row on the same buffers: the barriers keep calls apart.
      for (int call = 0; call < 3; ++call) {
        std::vector<std::vector<float>> work = data;
        group.run(
            [&](int rank) { group.communicator(rank).all_reduce_sum(work[static_cast<size_t>(rank)].data(), len); });
        for (int r = 0; r < n; ++r) EXPECT_EQ(work[static_cast<size_t>(r)], want) << "n " << n << " len " << len;
      }
    }
  }
}

TEST(ThreadGroup, RunCallsEveryRankOnce) {
  ThreadGroup group(4);
  std::vector<std::atomic<int>> calls(4);
  for (int i = 0; i < 100; ++i) group.run([&](int rank) { ++calls[static_cast<size_t>(rank)]; });
  for (auto& c : calls) EXPECT_EQ(c.load(), 100);
  EXPECT_EQ(group.communicator(3).rank(), 3);
  EXPECT_EQ(group.communicator(0).size(), 4);
}

// Rank r's n floats for the all-gather tests: their values name the rank and the place.
std::vector<float> part_of(int rank, int64_t n) {
  std::vector<float> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<float>(rank) * 1e6f + static_cast<float>(i) + 0.25f);
  return v;
}

void expect_gathered(const std::vector<float>& got, int size, int64_t n, const std::string& what) {
  ASSERT_EQ(got.size(), static_cast<size_t>(size * n)) << what;
  for (int r = 0; r < size; ++r) {
    const std::vector<float> want = part_of(r, n);
    ASSERT_TRUE(std::equal(want.begin(), want.end(), got.begin() + r * n)) << what << ": rank " << r << "'s part";
  }
}

TEST(ThreadGroup, AllGatherPutsEveryRanksPartInRankOrder) {
  for (int n : {1, 2, 3, 4}) {
    ThreadGroup group(n);
    for (int64_t len : {int64_t{0}, int64_t{1}, int64_t{7}, int64_t{5000}}) {
      for (int call = 0; call < 3; ++call) {  // calls in a row: the barriers keep them apart
        std::vector<std::vector<float>> out(static_cast<size_t>(n));
        group.run([&](int rank) {
          const std::vector<float> mine = part_of(rank, len);
          out[static_cast<size_t>(rank)].assign(static_cast<size_t>(n * len), -1.0f);
          group.communicator(rank).all_gather(mine.data(), len, out[static_cast<size_t>(rank)].data());
        });
        for (int r = 0; r < n; ++r)
          expect_gathered(out[static_cast<size_t>(r)], n, len, "n " + std::to_string(n) + " rank " + std::to_string(r));
      }
    }
  }
}

ForwardInputs sample_step() {
  ForwardInputs in;
  in.token_ids = {5, 6, 7, 8};
  in.positions = {0, 1, 2, 0};
  in.slot_mapping = {16, 17, 18, -1};
  in.query_start_loc = {0, 3, 4};
  in.seq_lens = {3, 9};
  in.max_blocks_per_seq = 2;
  in.block_tables = {1, 0, 4, 5};
  in.logits_indices = {2, 3};
  return in;
}

void expect_same_step(const ForwardInputs& a, const ForwardInputs& b) {
  EXPECT_EQ(a.token_ids, b.token_ids);
  EXPECT_EQ(a.positions, b.positions);
  EXPECT_EQ(a.slot_mapping, b.slot_mapping);
  EXPECT_EQ(a.query_start_loc, b.query_start_loc);
  EXPECT_EQ(a.seq_lens, b.seq_lens);
  EXPECT_EQ(a.block_tables, b.block_tables);
  EXPECT_EQ(a.max_blocks_per_seq, b.max_blocks_per_seq);
  EXPECT_EQ(a.logits_indices, b.logits_indices);
}

TEST(ProcessGroup, StepsPackAndUnpackWhole) {
  const ForwardInputs in = sample_step();
  const std::string bytes = pack_step(in);
  ForwardInputs out;
  ASSERT_TRUE(unpack_step(bytes, out));
  expect_same_step(in, out);
  // Any truncation, or a byte too many, is refused.
  for (size_t cut : {size_t{0}, size_t{7}, size_t{63}, bytes.size() - 1})
    EXPECT_FALSE(unpack_step(std::string_view(bytes).substr(0, cut), out)) << cut;
  EXPECT_FALSE(unpack_step(bytes + "x", out));
  std::string huge = bytes;
  const int64_t absurd = int64_t{1} << 40;
  std::memcpy(huge.data(), &absurd, sizeof absurd);  // a token count no buffer holds
  EXPECT_FALSE(unpack_step(huge, out));
}

int free_tcp_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

TEST(TcpGroup, RanksMeetAndAllReduceAndAllGatherAsTheThreadGroupDoes) {
  // Three ranks as threads of this test, meeting over loopback TCP as processes would: rank 0's steps reach the
  // others whole, and every rank's all-reduce holds the thread group's bits (the sum in rank order).
  constexpr int n = 3;
  const int port = free_tcp_port();
  std::vector<std::vector<float>> data(n);
  std::mt19937 rng(7);
  std::normal_distribution<float> dist(0.0f, 1.0f);
  for (auto& d : data)
    for (int i = 0; i < 5000; ++i) d.push_back(dist(rng));
  std::vector<std::vector<float>> want = data;
  ThreadGroup threads(n);
  threads.run(
      [&](int rank) { threads.communicator(rank).all_reduce_sum(want[static_cast<size_t>(rank)].data(), 5000); });

  std::vector<std::vector<float>> got = data;
  std::vector<std::vector<float>> gathered(n, std::vector<float>(n * 999, -1.0f));
  std::vector<int> steps_seen(n, 0);
  std::vector<std::thread> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.emplace_back([&, r] {
      auto group = TcpGroup::join(Rendezvous{n, r, "127.0.0.1", port, 30, 30});
      ASSERT_TRUE(group) << group.error().message;
      EXPECT_EQ((*group)->communicator().rank(), r);
      EXPECT_EQ((*group)->communicator().size(), n);
      const std::vector<float> mine = part_of(r, 999);
      if (r == 0) {
        (*group)->broadcast_step(sample_step());
        (*group)->communicator().all_reduce_sum(got[0].data(), 5000);
        (*group)->communicator().all_gather(mine.data(), 999, gathered[0].data());
        return;  // the group's destructor tells the others to stop
      }
      ForwardInputs in;
      while ((*group)->receive_step(in)) {
        expect_same_step(in, sample_step());
        ++steps_seen[static_cast<size_t>(r)];
        (*group)->communicator().all_reduce_sum(got[static_cast<size_t>(r)].data(), 5000);
        (*group)->communicator().all_gather(mine.data(), 999, gathered[static_cast<size_t>(r)].data());
      }
    });
  }
  for (auto& t : ranks) t.join();
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(got[static_cast<size_t>(r)], want[0]) << "rank " << r;
    expect_gathered(gathered[static_cast<size_t>(r)], n, 999, "TCP rank " + std::to_string(r));
    if (r > 0) {
      EXPECT_EQ(steps_seen[static_cast<size_t>(r)], 1);
    }
  }
}

TEST(TcpGroup, RefusesBadRanksAndGivesUpOnAbsentOnes) {
  EXPECT_FALSE(TcpGroup::join(Rendezvous{3, 3, "127.0.0.1", 29500, 1, 1}));
  EXPECT_FALSE(TcpGroup::join(Rendezvous{0, 0, "127.0.0.1", 29500, 1, 1}));
  auto lonely = TcpGroup::join(Rendezvous{2, 0, "127.0.0.1", free_tcp_port(), 0.5, 1});
  ASSERT_FALSE(lonely);
  EXPECT_NE(lonely.error().message.find("only 1 of 2 ranks arrived"), std::string::npos) << lonely.error().message;
}

// Start-up bytes (an NCCL unique id: binary, NULs inside), an empty string,
// then a step: every rank holds rank 0's bytes, and the step after them arrives whole.
std::string unique_id_like() {
  std::string id(128, '\0');
  for (size_t i = 0; i < id.size(); ++i) id[i] = static_cast<char>((i * 37) % 256);
  return id;
}

void expect_broadcast_bytes(ProcessGroup& group) {
  std::string id = group.rank() == 0 ? unique_id_like() : "something else";
  group.broadcast_bytes(id);
  EXPECT_EQ(id, unique_id_like()) << "rank " << group.rank();
  std::string none = group.rank() == 0 ? "" : "stale";
  group.broadcast_bytes(none);
  EXPECT_EQ(none, "") << "rank " << group.rank();
}

TEST(TcpGroup, AGroupOfOneMeetsNoOneAndItsCollectivesAreCopies) {
  // (the multi-process GPU path's test runs through one: tests/gpu/test_tensor_parallel_gpu.cpp)
  auto group = TcpGroup::join(Rendezvous{1, 0, "127.0.0.1", free_tcp_port(), 1, 1});
  ASSERT_TRUE(group) << group.error().message;
  EXPECT_EQ((*group)->size(), 1);
  std::string id = unique_id_like();
  (*group)->broadcast_bytes(id);
  EXPECT_EQ(id, unique_id_like());
  (*group)->broadcast_step(sample_step());
  std::vector<float> x = part_of(0, 10), sum = x, all(10);
  (*group)->communicator().all_reduce_sum(sum.data(), 10);
  (*group)->communicator().all_gather(x.data(), 10, all.data());
  EXPECT_EQ(sum, x);
  EXPECT_EQ(all, x);
  // Its GPU: $LOCAL_RANK (several ranks a host), else 0.
  EXPECT_EQ((*group)->local_rank(), 0);
  ::setenv("LOCAL_RANK", "3", 1);
  EXPECT_EQ((*group)->local_rank(), 3);
  ::unsetenv("LOCAL_RANK");
}

TEST(TcpGroup, BroadcastBytesGivesEveryRankRankZerosBytes) {
  constexpr int n = 3;
  const int port = free_tcp_port();
  std::vector<int> steps_seen(n, 0);
  std::vector<std::thread> ranks;
  for (int r = 0; r < n; ++r) {
    ranks.emplace_back([&, r] {
      auto group = TcpGroup::join(Rendezvous{n, r, "127.0.0.1", port, 30, 30});
      ASSERT_TRUE(group) << group.error().message;
      EXPECT_EQ((*group)->local_rank(), 0);  // no $LOCAL_RANK: one rank a host
      expect_broadcast_bytes(**group);
      if (r == 0) {
        (*group)->broadcast_step(sample_step());
        return;
      }
      serve_rank_steps(**group, [&](const ForwardInputs& in) {
        expect_same_step(in, sample_step());
        ++steps_seen[static_cast<size_t>(r)];
      });
    });
  }
  for (auto& t : ranks) t.join();
  EXPECT_EQ(steps_seen, (std::vector<int>{0, 1, 1}));
}

// Under mpirun (3 processes), `test` runs on every rank (kRank); run by ctest,
// it starts mpirun on this binary filtered to `test` and is done (kLaunched).
enum class Mpi { kRank, kLaunched, kUnavailable };
Mpi under_mpirun(const char* test) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") != nullptr) return Mpi::kRank;
#ifndef EMBER_HAVE_MPI
  (void)test;
  return Mpi::kUnavailable;
#else
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) return Mpi::kUnavailable;
  char exe[4096];
  const ssize_t len = ::readlink("/proc/self/exe", exe, sizeof exe - 1);
  EXPECT_GT(len, 0);
  if (len <= 0) return Mpi::kLaunched;
  exe[len] = '\0';
  // (shared memory without cross-memory attach, as tests/integration's mpirun: containers often forbid ptrace)
  const std::string run =
      "mpirun --allow-run-as-root --oversubscribe --mca btl_vader_single_copy_mechanism none "
      "-np 3 " +
      std::string(exe) + " --gtest_filter=" + test;
  EXPECT_EQ(std::system(run.c_str()), 0) << run;
  return Mpi::kLaunched;
#endif
}

// Under mpirun (3 processes) each rank all-gathers its part and all-reduces.
TEST(MpiGroup, AllGatherAndAllReduceAcrossProcesses) {
  const Mpi where = under_mpirun("MpiGroup.AllGatherAndAllReduceAcrossProcesses");
  if (where == Mpi::kUnavailable) GTEST_SKIP() << "built without MPI, or no mpirun";
  if (where == Mpi::kLaunched) return;
  auto group = MpiGroup::from_launcher();
  ASSERT_TRUE(group.ok()) << group.error().message;
  ASSERT_NE(*group, nullptr);
  Communicator& c = (*group)->communicator();
  const int n = c.size(), rank = c.rank();
  ASSERT_EQ(n, 3);
  const std::vector<float> mine = part_of(rank, 1234);
  std::vector<float> out(static_cast<size_t>(n * 1234), -1.0f);
  c.all_gather(mine.data(), 1234, out.data());
  expect_gathered(out, n, 1234, "MPI rank " + std::to_string(rank));
  std::vector<float> sum(100, static_cast<float>(rank + 1));
  c.all_reduce_sum(sum.data(), 100);
  EXPECT_EQ(sum, std::vector<float>(100, 6.0f));
  ForwardInputs in;
  if (rank > 0) {
    EXPECT_FALSE((*group)->receive_step(in));  // rank 0's group, destroyed at its end of this test, says stop
  }
}

// Under mpirun (3 processes on this host): broadcast_bytes, then a step after
// it; the local ranks are the world ranks (one host).
TEST(MpiGroup, BroadcastBytesAndLocalRanksAcrossProcesses) {
  const Mpi where = under_mpirun("MpiGroup.BroadcastBytesAndLocalRanksAcrossProcesses");
  if (where == Mpi::kUnavailable) GTEST_SKIP() << "built without MPI, or no mpirun";
  if (where == Mpi::kLaunched) return;
  auto group = MpiGroup::from_launcher();
  ASSERT_TRUE(group.ok()) << group.error().message;
  ASSERT_NE(*group, nullptr);
  ASSERT_EQ((*group)->size(), 3);
  EXPECT_EQ((*group)->local_rank(), (*group)->rank());
  expect_broadcast_bytes(**group);
  if ((*group)->rank() == 0) {
    (*group)->broadcast_step(sample_step());
    return;
  }
  int steps = 0;
  serve_rank_steps(**group, [&](const ForwardInputs& in) {
    expect_same_step(in, sample_step());
    ++steps;
  });
  EXPECT_EQ(steps, 1);
}

ModelConfig config_of(int64_t heads, int64_t kv_heads, int64_t inter) {
  ModelConfig c;
  c.architecture = "llama";
  c.hidden_size = 64;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = 16;
  c.intermediate_size = inter;
  c.num_layers = 1;
  c.vocab_size = 32;
  c.max_position_embeddings = 64;
  return c;
}

TEST(Shard, ConfigSplitsHeadsAndReplicatesFewKvHeads) {
  Result<ModelConfig> two = shard_config(config_of(8, 4, 128), 2);
  ASSERT_TRUE(two.ok());
  EXPECT_EQ(two->num_heads, 4);
  EXPECT_EQ(two->num_kv_heads, 2);
  EXPECT_EQ(two->intermediate_size, 64);
  Result<ModelConfig> eight = shard_config(config_of(8, 2, 128), 8);  // 2 KV heads over 8 ranks: replicated
  ASSERT_TRUE(eight.ok());
  EXPECT_EQ(eight->num_heads, 1);
  EXPECT_EQ(eight->num_kv_heads, 1);
  const std::pair<ModelConfig, const char*> bad[] = {{config_of(9, 3, 128), "9 attention heads"},
                                                     {config_of(8, 4, 101), "MLP width 101"},
                                                     {config_of(12, 6, 120), "6 KV heads"}};
  for (const auto& [c, what] : bad) {
    Result<ModelConfig> s = shard_config(c, c.num_heads == 12 ? 4 : 2);
    ASSERT_FALSE(s.ok()) << what;
    EXPECT_NE(s.error().message.find(what), std::string::npos) << s.error().message;
  }
}

TEST(Shard, QuantizedSlicesDequantizeToTheMatrixSlices) {
  // A Q8_0 o_proj [64, 128]: every 32-element block is a scale and 32 int8s.
  ModelConfig c = config_of(8, 8, 128);
  LlamaWeights w;
  w.config = c;
  std::mt19937 rng(4);
  const auto q8 = [&](int64_t rows, int64_t cols) {
    WeightMatrix m;
    m.dtype = DType::kQ8_0;
    m.rows = rows;
    m.cols = cols;
    m.raw.resize(static_cast<size_t>(rows * dtype_row_bytes(DType::kQ8_0, cols)));
    for (size_t i = 0; i < m.raw.size(); ++i) m.raw[i] = static_cast<uint8_t>(rng() % 251);
    for (size_t b = 0; b < m.raw.size(); b += 34) {  // finite fp16 scales: 0x3c00 = 1.0 plus a little
      m.raw[b] = static_cast<uint8_t>(rng() % 256);
      m.raw[b + 1] = 0x3c;
    }
    return m;
  };
  LayerWeights l;
  l.wq = q8(128, 64);
  l.wk = q8(128, 64);
  l.wv = q8(128, 64);
  l.wo = q8(64, 128);
  l.w_gate_up = q8(256, 64);
  l.w_down = q8(64, 128);
  l.attn_norm.assign(64, 1.0f);
  l.ffn_norm.assign(64, 1.0f);
  w.layers.push_back(l);
  const auto dequant = [](const WeightMatrix& m) {
    std::vector<float> out(static_cast<size_t>(m.rows * m.cols));
    for (int64_t r = 0; r < m.rows; ++r)
      quant::dequantize_row(m.dtype, m.raw.data() + r * dtype_row_bytes(m.dtype, m.cols), m.cols,
                            out.data() + r * m.cols);
    return out;
  };
  const std::vector<float> wo = dequant(l.wo), gate_up = dequant(l.w_gate_up);
  for (int rank = 0; rank < 2; ++rank) {
    Result<LlamaWeights> s = shard_weights(w, rank, 2);
    ASSERT_TRUE(s.ok()) << s.error().message;
    const LayerWeights& sl = s->layers[0];
    ASSERT_EQ(sl.wo.rows, 64);
    ASSERT_EQ(sl.wo.cols, 64);
    const std::vector<float> got = dequant(sl.wo);
    for (int64_t r = 0; r < 64; ++r)
      for (int64_t col = 0; col < 64; ++col)
        ASSERT_EQ(got[static_cast<size_t>(r * 64 + col)], wo[static_cast<size_t>(r * 128 + rank * 64 + col)]);
    // gate rows [64 rank, 64 rank + 64), then the up rows 128 further.
    const std::vector<float> gu = dequant(sl.w_gate_up);
    ASSERT_EQ(sl.w_gate_up.rows, 128);
    for (int64_t r = 0; r < 128; ++r) {
      const int64_t src = r < 64 ? rank * 64 + r : 128 + rank * 64 + (r - 64);
      for (int64_t col = 0; col < 64; ++col)
        ASSERT_EQ(gu[static_cast<size_t>(r * 64 + col)], gate_up[static_cast<size_t>(src * 64 + col)]);
    }
  }
  // Over 8 ranks o_proj's columns would be 16 wide: inside a 32-element block.
  Result<LlamaWeights> cut = shard_weights(w, 0, 8);
  ASSERT_FALSE(cut.ok());
  EXPECT_NE(cut.error().message.find("quantization blocks"), std::string::npos) << cut.error().message;
}

// Every element of an f32 matrix names its place: 1000 row + column.
WeightMatrix labelled(int64_t rows, int64_t cols) {
  WeightMatrix m = WeightMatrix::zeros(rows, cols);
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) m.f32[static_cast<size_t>(r * cols + c)] = static_cast<float>(1000 * r + c);
  return m;
}

TEST(Shard, EightRanksLoadTheirRowsAndColumns) {
  // 16 query heads of 2 dims, MLP 32, hidden 8: rank r holds query heads 2r, 2r + 1 (rows 4r .. 4r + 3 of q and
  // columns 4r .. 4r + 3 of o_proj) and MLP columns 4r .. 4r + 3 (gate rows 4r.., up rows 32 + 4r.., down columns
  // 4r..). With 8 KV heads each rank has KV head r; with 2, KV head r / 4 (replicated over 4 ranks).
  for (const int64_t kv_heads : {8, 2}) {
    ModelConfig c = config_of(16, kv_heads, 32);
    c.hidden_size = 8;
    c.head_dim = 2;
    LlamaWeights w;
    w.config = c;
    LayerWeights l;
    l.wq = labelled(32, 8);
    l.wk = labelled(kv_heads * 2, 8);
    l.wv = labelled(kv_heads * 2, 8);
    l.wo = labelled(8, 32);
    l.w_gate_up = labelled(64, 8);
    l.w_down = labelled(8, 32);
    w.layers.push_back(l);
    for (int rank = 0; rank < 8; ++rank) {
      Result<LlamaWeights> s = shard_weights(w, rank, 8);
      ASSERT_TRUE(s.ok()) << s.error().message;
      const LayerWeights& o = s->layers[0];
      EXPECT_EQ(s->config.num_heads, 2);
      EXPECT_EQ(s->config.num_kv_heads, 1);
      EXPECT_EQ(s->config.intermediate_size, 4);
      const int64_t kv = kv_heads == 8 ? rank : rank / 4;
      for (int64_t i = 0; i < 4; ++i) {
        EXPECT_EQ(o.wq.f32[static_cast<size_t>(i * 8)], 1000.0f * (4 * rank + i)) << rank;
        EXPECT_EQ(o.w_gate_up.f32[static_cast<size_t>(i * 8)], 1000.0f * (4 * rank + i)) << rank;
        EXPECT_EQ(o.w_gate_up.f32[static_cast<size_t>((4 + i) * 8)], 1000.0f * (32 + 4 * rank + i)) << rank;
        for (int64_t row = 0; row < 8; ++row) {
          EXPECT_EQ(o.wo.f32[static_cast<size_t>(row * 4 + i)], 1000.0f * row + 4 * rank + i) << rank;
          EXPECT_EQ(o.w_down.f32[static_cast<size_t>(row * 4 + i)], 1000.0f * row + 4 * rank + i) << rank;
        }
      }
      for (int64_t i = 0; i < 2; ++i) {
        EXPECT_EQ(o.wk.f32[static_cast<size_t>(i * 8)], 1000.0f * (2 * kv + i)) << rank << " kv " << kv_heads;
        EXPECT_EQ(o.wv.f32[static_cast<size_t>(i * 8 + 3)], 1000.0f * (2 * kv + i) + 3) << rank;
      }
      EXPECT_EQ(o.wq.rows, 4);
      EXPECT_EQ(o.wk.rows, 2);
      EXPECT_EQ(o.wo.cols, 4);
      EXPECT_EQ(o.w_gate_up.rows, 8);
      EXPECT_EQ(o.w_down.cols, 4);
    }
  }
}

class CpuTensorParallel : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_NO_FATAL_FAILURE(test_util::load_tiny_llama(config_, weights_)); }

  std::unique_ptr<CpuModelRunner> runner(int tp) {
    auto r = CpuModelRunner::create(weights_, tp, 2, 64, 4, {});
    EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().message);
    return r.ok() ? std::move(*r) : nullptr;
  }

  // Runs `reqs` through an engine on `runner` (its pool: 64 blocks of 4 tokens):
  // every sequence's tokens in request order, and the pool must be whole after.
  std::vector<std::vector<int32_t>> run_engine(std::unique_ptr<ModelRunner> runner,
                                               const std::vector<EngineRequest>& reqs) {
    test_util::PieceTokenizer tokenizer(static_cast<int32_t>(config_.vocab_size));
    EngineConfig ec;
    ec.scheduler.block_size = 4;
    ec.scheduler.num_blocks = 64;
    ec.scheduler.max_num_batched_tokens = 64;
    ec.scheduler.max_num_seqs = 8;
    ec.scheduler.max_model_len = 128;
    ec.log_interval_s = 0;
    Engine engine(ec, std::move(runner), tokenizer, {});
    std::vector<std::shared_ptr<RequestStream>> streams;
    for (const EngineRequest& r : reqs) {
      AddResult a = engine.add(r);
      EXPECT_EQ(a.code, AddResult::Code::kOk) << a.error;
      if (a.code != AddResult::Code::kOk) return {};
      streams.push_back(a.stream);
    }
    std::vector<std::vector<int32_t>> got;
    for (size_t i = 0; i < streams.size(); ++i)
      for (const auto& t : test_util::collect(*streams[i], reqs[i].params.n).tokens) got.push_back(t);
    EXPECT_EQ(engine.metrics().kv_cache_usage, 0.0);
    return got;
  }

  ModelConfig config_;
  LlamaWeights weights_;
};

TEST_F(CpuTensorParallel, LoadersCutEachLayerAsItCompletes) {
  // A loader's LayerHook with shard_layer keeps rank 1's slices of each layer and drops the rest: the result is
  // shard_weights of the whole model, layer for layer; the loader's own copy of every layer is emptied.
  Result<GgufFile> f = GgufFile::open(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_llama.gguf");
  ASSERT_TRUE(f.ok());
  for (int n : {2, 4}) {
    std::vector<LayerWeights> kept;
    const LayerHook cut = [&](int64_t, LayerWeights& layer) -> Status {
      Result<LayerWeights> s = shard_layer(layer, config_, 1, n);
      if (!s) return s.error();
      kept.push_back(std::move(*s));
      layer = LayerWeights{};
      return Status::success();
    };
    Result<LlamaWeights> rest = load_llama_weights(*f, config_, cut);
    ASSERT_TRUE(rest.ok()) << rest.error().message;
    Result<LlamaWeights> want = shard_weights(weights_, 1, n);
    ASSERT_TRUE(want.ok());
    ASSERT_EQ(kept.size(), want->layers.size());
    for (size_t l = 0; l < kept.size(); ++l) {
      EXPECT_EQ(kept[l].wq, want->layers[l].wq) << n << " layer " << l;
      EXPECT_EQ(kept[l].wk, want->layers[l].wk) << n << " layer " << l;
      EXPECT_EQ(kept[l].wo, want->layers[l].wo) << n << " layer " << l;
      EXPECT_EQ(kept[l].w_gate_up, want->layers[l].w_gate_up) << n << " layer " << l;
      EXPECT_EQ(kept[l].w_down, want->layers[l].w_down) << n << " layer " << l;
      EXPECT_TRUE(rest->layers[l].wq.empty());
    }
    EXPECT_EQ(rest->embed, weights_.embed);
  }
}

// Three sequences of random tokens (9, 14 and 19) with 8 KV blocks each: a
// prefill of all three but their last two tokens, then two one-token decode
// steps. The steps' spans point into tokens and blocks.
struct ThreeSequences {
  ThreeSequences(int64_t vocab, uint32_t seed) : tokens(3), blocks(3), steps(3) {
    std::mt19937 rng(seed);
    for (int s = 0; s < 3; ++s) {
      for (int i = 0; i < 9 + 5 * s; ++i) tokens[s].push_back(static_cast<int32_t>(rng() % vocab));
      for (int b = 0; b < 8; ++b) blocks[s].push_back(s * 8 + b);
      const auto len = static_cast<int32_t>(tokens[s].size());
      steps[0].push_back({tokens[s], 0, len - 2, blocks[s], 1});
      steps[1].push_back({tokens[s], len - 2, 1, blocks[s], 1});
      steps[2].push_back({tokens[s], len - 1, 1, blocks[s], 1});
    }
  }
  std::vector<std::vector<int32_t>> tokens, blocks;
  std::vector<std::vector<StepSequence>> steps;
};

// Each step's logits from `split` within float32 reduction-order tolerance of `want`.
void expect_logits_match(ModelRunner& split, const std::vector<std::vector<StepSequence>>& steps,
                         const std::vector<std::vector<float>>& want, int tp) {
  for (size_t i = 0; i < steps.size(); ++i) {
    std::vector<float> got;
    split.forward_logits(steps[i], got);
    ASSERT_EQ(got.size(), want[i].size());
    double worst = 0, scale = 0;
    for (size_t j = 0; j < got.size(); ++j) {
      worst = std::max(worst, double{std::fabs(got[j] - want[i][j])});
      scale = std::max(scale, double{std::fabs(want[i][j])});
    }
    EXPECT_LT(worst, 1e-5 * std::max(scale, 1.0)) << "tp " << tp << " step " << i;
    EXPECT_GT(scale, 0.0);
  }
}

TEST_F(CpuTensorParallel, LogitsMatchTheUnsplitModel) {
  // tiny_llama: 4 heads, 2 KV heads, MLP 128; over 4 ranks its KV heads are replicated.
  auto whole = runner(1);
  const ThreeSequences seqs(config_.vocab_size, 9);
  const auto& steps = seqs.steps;
  std::vector<std::vector<float>> want(3);
  for (int i = 0; i < 3; ++i) whole->forward_logits(steps[i], want[i]);
  for (int tp : {2, 4}) {
    auto split = runner(tp);
    ASSERT_NE(split, nullptr);
    EXPECT_EQ(split->tensor_parallel_size(), tp);
    expect_logits_match(*split, steps, want, tp);
  }
  // Shapes the model cannot split are refused.
  EXPECT_FALSE(CpuModelRunner::create(weights_, 3, 2, 64, 4, {}).ok());
}

// The generic wrapper GPUs use (one runner per rank, each sampling its copy
// of the logits with its own copy of the generators), here over CPU ranks:
// seeded sampled outputs equal the CPU's own 2-rank runner's (the same shards
// and all-reduce, so the same bits), and rank 0's tokens are the step's.
TEST_F(CpuTensorParallel, TheWrapperOfRankRunnersSamplesLikeOneRunner) {
  spdlog::set_level(spdlog::level::warn);
  ThreadGroup comms(2);  // (only its communicators: the wrapper runs the ranks on its own threads)
  const TensorParallelRunner::RankFactory make = [&](int r) -> Result<std::unique_ptr<ModelRunner>> {
    Result<LlamaWeights> shard = shard_weights(weights_, r, 2);
    if (!shard) return shard.error();
    auto rank = CpuModelRunner::create(std::move(*shard), 1, 1, 64, 4, {});
    if (!rank) return rank.error();
    (*rank)->set_communicator(&comms.communicator(r));
    return std::unique_ptr<ModelRunner>(std::move(*rank));
  };
  std::vector<EngineRequest> reqs;
  std::mt19937 rng(8);
  for (int i = 0; i < 5; ++i) {
    EngineRequest r;
    for (int j = 0; j < 3 + 2 * i; ++j) r.prompt_ids.push_back(static_cast<int32_t>(rng() % config_.vocab_size));
    r.params.temperature = 1.0f;
    r.params.top_p = 0.9f;
    r.params.seed = 40 + i;
    r.params.max_tokens = 24;
    r.params.ignore_eos = true;
    if (i == 2) r.params.n = 2;
    reqs.push_back(r);
  }
  std::vector<std::vector<std::vector<int32_t>>> outputs;
  for (int kind = 0; kind < 2; ++kind) {
    std::unique_ptr<ModelRunner> runner;
    if (kind == 0) {
      runner = std::move(CpuModelRunner::create(weights_, 2, 2, 64, 4, {})).value();
    } else {
      auto tp = TensorParallelRunner::create(2, make, config_);
      ASSERT_TRUE(tp.ok()) << tp.error().message;
      EXPECT_EQ((*tp)->size(), 2);
      runner = std::move(*tp);
    }
    outputs.push_back(run_engine(std::move(runner), reqs));
  }
  spdlog::set_level(spdlog::level::info);
  ASSERT_EQ(outputs[0].size(), 6u);
  for (size_t i = 0; i < outputs[0].size(); ++i) {
    EXPECT_EQ(outputs[0][i].size(), 24u);
    EXPECT_EQ(outputs[1][i], outputs[0][i]) << "sequence " << i;
  }
}

TEST_F(CpuTensorParallel, GreedyTokensAreIdenticalThroughTheEngine) {
  spdlog::set_level(spdlog::level::warn);
  std::vector<EngineRequest> reqs;
  std::mt19937 rng(5);
  for (int i = 0; i < 6; ++i) {
    EngineRequest r;
    for (int j = 0; j < 4 + 3 * i; ++j) r.prompt_ids.push_back(static_cast<int32_t>(rng() % config_.vocab_size));
    r.params.temperature = 0;
    r.params.max_tokens = 64;
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  std::vector<std::vector<std::vector<int32_t>>> outputs;
  for (int tp : {1, 2, 4}) outputs.push_back(run_engine(runner(tp), reqs));
  spdlog::set_level(spdlog::level::info);
  ASSERT_EQ(outputs[0].size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(outputs[0][i].size(), 64u);
    EXPECT_EQ(outputs[1][i], outputs[0][i]) << "tp 2, request " << i;
    EXPECT_EQ(outputs[2][i], outputs[0][i]) << "tp 4, request " << i;
  }
}

TEST(Shard, VocabRowsForEightRanks) {
  // ceil(V / 8) rows a rank, the last ranks fewer: 49152 (SmolLM2) splits evenly, 1001 leaves rank 7 with 119 rows,
  // and a vocabulary of 5 leaves ranks 5..7 none.
  for (const auto& [v, stride] : {std::pair<int64_t, int64_t>{49152, 6144}, {1001, 126}, {5, 1}}) {
    int64_t covered = 0;
    for (int rank = 0; rank < 8; ++rank) {
      const VocabSplit s = vocab_split(v, rank, 8);
      EXPECT_EQ(s.ranks, 8);
      EXPECT_EQ(s.stride, stride) << v;
      EXPECT_EQ(s.begin, std::min(rank * stride, v)) << v << " rank " << rank;
      EXPECT_EQ(s.rows, std::clamp<int64_t>(v - rank * stride, 0, stride)) << v << " rank " << rank;
      EXPECT_EQ(s.begin, covered) << v << " rank " << rank;  // contiguous, in rank order
      covered += s.rows;
    }
    EXPECT_EQ(covered, v);
  }
  EXPECT_EQ(vocab_split(1001, 7, 8).rows, 119);
  // The weights: the embedding and an untied head keep the rank's rows (copied); a tied head is the embedding's
  // rows; kReplicated keeps both whole.
  for (const bool tied : {false, true}) {
    ModelConfig c = config_of(16, 8, 32);
    c.hidden_size = 8;
    c.head_dim = 2;
    c.vocab_size = 1001;
    c.tie_word_embeddings = tied;
    LlamaWeights w;
    w.config = c;
    w.embed = labelled(1001, 8);
    if (!tied) {
      w.lm_head = labelled(1001, 8);
      for (float& x : w.lm_head.f32) x = -x;
    }
    for (int rank = 0; rank < 8; ++rank) {
      Result<LlamaWeights> s = shard_weights(w, rank, 8);
      ASSERT_TRUE(s.ok()) << s.error().message;
      EXPECT_EQ(s->vocab, vocab_split(1001, rank, 8));
      const int64_t rows = s->vocab.rows;
      ASSERT_EQ(s->embed.rows, rows);
      for (int64_t i = 0; i < rows * 8; ++i)
        ASSERT_EQ(s->embed.f32[static_cast<size_t>(i)], w.embed.f32[static_cast<size_t>(rank * 126 * 8 + i)]) << rank;
      const DecoderWeights views = host_weight_views(*s);
      ASSERT_EQ(views.head.rows(), rows);
      ASSERT_EQ(views.head.cols(), 8);
      EXPECT_EQ(s->lm_head.rows, tied ? 0 : rows);
      for (int64_t i = 0; i < rows; ++i)
        for (int64_t col = 0; col < 8; ++col) {
          const float want = (tied ? 1.0f : -1.0f) * (1000.0f * (rank * 126 + i) + col);
          ASSERT_EQ(views.head.f32()[i * 8 + col], want) << "rank " << rank << " row " << i;
        }
    }
    Result<LlamaWeights> replicated = shard_weights(w, 3, 8, LmHead::kReplicated);
    ASSERT_TRUE(replicated.ok());
    EXPECT_FALSE(replicated->vocab.on());
    EXPECT_EQ(replicated->lm_head, w.lm_head);
    EXPECT_EQ(replicated->embed, w.embed);
  }
}

TEST_F(CpuTensorParallel, VocabParallelLogitsAreTheReplicatedHeadsBits) {
  // The same shards but the LM head: each rank's logits are rows of the same matrix product, so the gathered
  // logits must be the replicated head's bit for bit.
  std::vector<std::vector<int32_t>> tokens(3), blocks(3);
  std::mt19937 rng(3);
  std::vector<StepSequence> step;
  for (int s = 0; s < 3; ++s) {
    for (int i = 0; i < 6 + 3 * s; ++i) tokens[s].push_back(static_cast<int32_t>(rng() % config_.vocab_size));
    for (int b = 0; b < 8; ++b) blocks[s].push_back(s * 8 + b);
    step.push_back({tokens[s], 0, static_cast<int32_t>(tokens[s].size()), blocks[s], 2});
  }
  for (int tp : {2, 4}) {
    std::vector<float> a, b;
    auto replicated = CpuModelRunner::create(weights_, tp, 2, 64, 4, {}, nullptr, LmHead::kReplicated);
    auto split = CpuModelRunner::create(weights_, tp, 2, 64, 4, {}, nullptr, LmHead::kVocabParallel);
    ASSERT_TRUE(replicated.ok() && split.ok());
    (*replicated)->forward_logits(step, a);
    (*split)->forward_logits(step, b);
    ASSERT_EQ(a.size(), 6 * static_cast<size_t>(config_.vocab_size));
    EXPECT_EQ(a, b) << "tp " << tp;
  }
}

// A tied model (as SmolLM2) whose vocabulary of 1001 none of 2, 3 and 4 divides, with 12 heads and 12 KV heads so
// that 3 ranks split it too.
class CpuVocabParallel : public CpuTensorParallel {
 protected:
  void SetUp() override {
    ModelConfig c;
    c.architecture = "llama";
    c.hidden_size = 96;
    c.num_heads = 12;
    c.num_kv_heads = 12;
    c.head_dim = 8;
    c.intermediate_size = 192;
    c.num_layers = 2;
    c.vocab_size = 1001;
    c.max_position_embeddings = 256;
    c.tie_word_embeddings = true;
    auto w = make_dummy_weights(c, 21);
    ASSERT_TRUE(w.ok()) << w.error().message;
    config_ = c;
    weights_ = std::move(*w);
  }
};

TEST_F(CpuVocabParallel, LogitsMatchTheUnsplitModelAtTwoThreeAndFourRanks) {
  auto whole = runner(1);
  const ThreeSequences seqs(config_.vocab_size, 11);
  const auto& steps = seqs.steps;
  std::vector<std::vector<float>> want(3);
  for (int i = 0; i < 3; ++i) whole->forward_logits(steps[i], want[i]);
  for (int tp : {2, 3, 4}) {
    auto split = runner(tp);
    ASSERT_NE(split, nullptr);
    expect_logits_match(*split, steps, want, tp);
  }
}

TEST_F(CpuVocabParallel, GreedyTokensAreIdenticalThroughTheEngine) {
  spdlog::set_level(spdlog::level::warn);
  std::vector<EngineRequest> reqs;
  std::mt19937 rng(6);
  for (int i = 0; i < 4; ++i) {
    EngineRequest r;
    for (int j = 0; j < 4 + 3 * i; ++j) r.prompt_ids.push_back(static_cast<int32_t>(rng() % config_.vocab_size));
    r.params.temperature = 0;
    r.params.max_tokens = 64;
    r.params.ignore_eos = true;
    reqs.push_back(r);
  }
  std::vector<std::vector<std::vector<int32_t>>> outputs;
  for (int tp : {1, 2, 3, 4}) outputs.push_back(run_engine(runner(tp), reqs));
  spdlog::set_level(spdlog::level::info);
  ASSERT_EQ(outputs[0].size(), reqs.size());
  for (size_t i = 0; i < reqs.size(); ++i) {
    EXPECT_EQ(outputs[0][i].size(), 64u);
    for (size_t k = 1; k < outputs.size(); ++k)
      EXPECT_EQ(outputs[k][i], outputs[0][i]) << "tp " << k + 1 << ", request " << i;
  }
}

// A communicator that only reports what the watchdog asks of it.
class FakeComm final : public Communicator {
 public:
  explicit FakeComm(int rank) : rank_(rank) {}
  int rank() const override { return rank_; }
  int size() const override { return 2; }
  void all_reduce_sum(float*, int64_t) override {}
  void all_gather(const float*, int64_t, float*) override {}
  std::string async_error() override {
    std::lock_guard<std::mutex> lock(mu_);
    return error_;
  }
  void abort() override { aborted_ = true; }
  void fail_with(std::string e) {
    std::lock_guard<std::mutex> lock(mu_);
    error_ = std::move(e);
  }
  std::atomic<bool> aborted_{false};

 private:
  int rank_;
  std::mutex mu_;
  std::string error_;
};

struct Failures {
  std::mutex mu;
  std::vector<std::string> messages;
  CollectiveWatchdog::Failure record() {
    return [this](const std::string& m) {
      std::lock_guard<std::mutex> lock(mu);
      messages.push_back(m);
    };
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(mu);
    return messages.size();
  }
  bool wait_for_one(std::chrono::milliseconds limit) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (count() == 0 && std::chrono::steady_clock::now() < until)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    return count() > 0;
  }
};

TEST(CollectiveWatchdog, AnAsyncErrorAbortsEveryCommunicatorNamingTheRank) {
  FakeComm a(0), b(1);
  Failures f;
  CollectiveWatchdog dog({&a, &b}, 60, f.record(), 0.01);
  b.fail_with("unhandled system error (remote process exited)");
  ASSERT_TRUE(f.wait_for_one(std::chrono::seconds(5)));
  EXPECT_NE(f.messages[0].find("rank 1"), std::string::npos) << f.messages[0];
  EXPECT_NE(f.messages[0].find("remote process exited"), std::string::npos) << f.messages[0];
  EXPECT_TRUE(a.aborted_ && b.aborted_);
}

TEST(CollectiveWatchdog, AStepUnfinishedPastTheTimeoutEndsItNamingTheLateRanks) {
  FakeComm a(0), b(1);
  Failures f;
  CollectiveWatchdog dog({&a, &b}, 0.2, f.record(), 0.01);
  dog.begin(0);
  dog.begin(1);
  dog.end(0);  // rank 0 finished; rank 1's step hangs
  ASSERT_TRUE(f.wait_for_one(std::chrono::seconds(5)));
  EXPECT_NE(f.messages[0].find("rank(s) 1:"), std::string::npos) << f.messages[0];
  EXPECT_NE(f.messages[0].find("--collective-timeout"), std::string::npos) << f.messages[0];
  EXPECT_TRUE(a.aborted_ && b.aborted_);
}

// NCCL's start-up, before any communicator exists: a rank left waiting in
// ncclCommInitRank (a peer died after the id exchange) ends with a message.
TEST(CollectiveWatchdog, AStartUpThatNeverEndsEndsTheProcessNamingIt) {
  Failures f;
  auto dog = CollectiveWatchdog::for_startup(3, "NCCL's start-up (ncclCommInitRank)", 0.2, f.record(), 0.01);
  dog->begin(0);
  ASSERT_TRUE(f.wait_for_one(std::chrono::seconds(5)));
  EXPECT_NE(f.messages[0].find("NCCL's start-up (ncclCommInitRank) did not complete"), std::string::npos)
      << f.messages[0];
  EXPECT_NE(f.messages[0].find("rank(s) 3:"), std::string::npos) << f.messages[0];
  Failures quiet;
  {
    // (a timeout far above a loaded machine's scheduling delays between begin and end)
    auto ok = CollectiveWatchdog::for_startup(0, "start-up", 1.0, quiet.record(), 0.01);
    ok->begin(0);
    ok->end(0);
    std::this_thread::sleep_for(std::chrono::milliseconds(1200));
  }
  EXPECT_EQ(quiet.count(), 0u);
}

TEST(CollectiveWatchdog, StepsThatFinishAndAnIdleServerNeverTimeOut) {
  FakeComm a(0), b(1);
  Failures f;
  {
    // Steps of 50 ms for 2 s (four timeouts of 0.5 s), two in flight at a time as under async scheduling: each
    // step is in flight ~100 ms, which leaves 400 ms for a loaded machine's late wake-ups (CI runs this beside
    // other tests on 2 cores, and under ASan).
    CollectiveWatchdog dog({&a, &b}, 0.5, f.record(), 0.01);
    for (int r : {0, 1}) dog.begin(r);
    for (int i = 0; i < 40; ++i) {
      for (int r : {0, 1}) dog.begin(r);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      for (int r : {0, 1}) dog.end(r);
    }
    for (int r : {0, 1}) dog.end(r);
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));  // idle for two timeouts: nothing in flight
  }
  EXPECT_EQ(f.count(), 0u) << f.messages.front();
  EXPECT_FALSE(a.aborted_ || b.aborted_);
}

}  // namespace
}  // namespace ember
