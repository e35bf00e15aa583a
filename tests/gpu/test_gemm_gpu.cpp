// gpu::Gemm (gemv for M <= 8, cuBLASLt above) against a float64 reference of
// the same bf16 inputs: y = x w^T (+ bias). Every element of every output is
// compared (outputs poisoned first). bf16 outputs must land under a relative
// L2 error of 1e-2 (their own rounding is ~2e-3); float32 outputs, which only
// carry fp32 accumulation error, under 1e-3. Runs only on a GPU machine.

#include <algorithm>
#include <thread>

#include "kernels/cuda/gemm.h"
#include "tests/gpu/ops_test_util.h"

namespace ember {
namespace {

using gputest::bf16;
using gputest::compare;
using gputest::DeviceBuffer;
using gputest::to_floats;

// ref[m, n] = sum_k x[m, k] w[n, k] in double, rows split over threads.
std::vector<double> reference(const std::vector<float>& x, const std::vector<float>& w, int m, int n, int k) {
  std::vector<double> ref(static_cast<size_t>(m) * n);
  const int threads = std::max(1u, std::min(16u, std::thread::hardware_concurrency()));
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (int col = t; col < n; col += threads) {
        const float* wr = w.data() + static_cast<size_t>(col) * k;
        for (int row = 0; row < m; ++row) {
          const float* xr = x.data() + static_cast<size_t>(row) * k;
          double acc = 0;
          for (int i = 0; i < k; ++i) acc += static_cast<double>(xr[i]) * wr[i];
          ref[static_cast<size_t>(row) * n + col] = acc;
        }
      }
    });
  }
  for (auto& th : pool) th.join();
  return ref;
}

enum class Path { kDispatch, kCublasLt, kGemvVariant, kGemvMmaVariant };

// Runs all four variants (bias or not, bf16 or f32 out) of one shape through
// `path` and checks each.
void check_shape(gpu::Gemm& gemm, int m, int n, int k, Path path, std::mt19937& rng, int x_offset = 0,
                 int gemv_variant = 0) {
  SCOPED_TRACE(testing::Message() << "M=" << m << " N=" << n << " K=" << k << " path="
                                  << (path == Path::kDispatch   ? "dispatch"
                                      : path == Path::kCublasLt     ? "cublaslt"
                                      : path == Path::kGemvVariant  ? "gemv variant " + std::to_string(gemv_variant)
                                                                    : "gemv_mma variant " + std::to_string(gemv_variant))
                                  << " x_offset=" << x_offset);
  std::vector<float> x_f, w_f, bias(n);
  auto x = gputest::random_bf16(static_cast<size_t>(m) * k, rng, x_f);
  auto w = gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
  std::normal_distribution<float> g(0.0f, 1.0f);
  for (auto& b : bias) b = g(rng);
  const std::vector<double> ref = reference(x_f, w_f, m, n, k);

  // x_offset elements of slack in front of x: a misaligned activation pointer.
  DeviceBuffer<bf16> d_x(static_cast<size_t>(m) * k + x_offset), d_w(static_cast<size_t>(n) * k);
  DeviceBuffer<float> d_bias(n), d_y32(static_cast<size_t>(m) * n);
  DeviceBuffer<bf16> d_y16(static_cast<size_t>(m) * n);
  std::vector<bf16> x_padded(x_offset, gputest::to_bf16(0.0f));
  x_padded.insert(x_padded.end(), x.begin(), x.end());
  d_x.upload(x_padded);
  d_w.upload(w);
  d_bias.upload(bias);
  const bf16* xp = d_x.get() + x_offset;

  for (int variant = 0; variant < 4; ++variant) {
    const bool with_bias = variant & 1, f32_out = variant & 2;
    d_y32.poison();
    d_y16.poison();
    void* y = f32_out ? static_cast<void*>(d_y32.get()) : static_cast<void*>(d_y16.get());
    const float* b = with_bias ? d_bias.get() : nullptr;
    Status s = path == Path::kDispatch   ? gemm.linear(xp, d_w.get(), b, y, f32_out, m, n, k, nullptr)
               : path == Path::kCublasLt ? gemm.linear_cublaslt(xp, d_w.get(), b, y, f32_out, m, n, k, nullptr)
               : path == Path::kGemvVariant
                   ? gpu::gemv_variant(xp, d_w.get(), b, y, f32_out, m, n, k, gemv_variant, /*pdl=*/true, nullptr)
                   : gpu::gemv_mma_variant(xp, d_w.get(), b, y, f32_out, m, n, k, gemv_variant, /*pdl=*/true, nullptr);
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
    std::vector<double> want = ref;
    if (with_bias)
      for (size_t i = 0; i < want.size(); ++i) want[i] += bias[i % n];
    const std::vector<float> got = f32_out ? d_y32.download() : to_floats(d_y16.download());
    const auto e = compare(got, want);
    EXPECT_EQ(e.non_finite, 0) << "bias=" << with_bias << " f32=" << f32_out;
    EXPECT_LT(e.rel_l2, f32_out ? 1e-3 : 1e-2) << "bias=" << with_bias << " f32=" << f32_out;
    EXPECT_LT(e.worst_rel, 0.1) << "bias=" << with_bias << " f32=" << f32_out;
  }
}

std::unique_ptr<gpu::Gemm> make_gemm() {
  auto g = gpu::Gemm::create();
  EXPECT_TRUE(g.ok()) << (g.ok() ? "" : g.error().message);
  return g.ok() ? std::move(g.value()) : nullptr;
}

// The brief's grid: M across the gemv/cuBLASLt threshold, N and K the model sizes.
TEST(GemmGpu, GridMatchesFloat64Reference) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(101);
  for (int m : {1, 2, 3, 5, 8, 9, 16, 64, 257})
    for (int n : {64, 576, 1536, 4096})
      for (int k : {64, 576, 1536, 4096}) check_shape(*gemm, m, n, k, Path::kDispatch, rng);
}

// The cuBLASLt path at the small M the gemv kernel normally takes (the
// benchmark compares the two, so both must be right).
TEST(GemmGpu, CublasLtPathAtSmallM) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(202);
  for (int m : {1, 3, 8})
    for (int n : {64, 1536})
      for (int k : {576, 4096}) check_shape(*gemm, m, n, k, Path::kCublasLt, rng);
}

// Every gemv tuning variant (launched as a programmatic dependent), K both a
// whole number of load groups and not (the tail loop), N not a multiple of
// the rows a block owns.
TEST(GemmGpu, GemvVariantsMatchFloat64Reference) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(404);
  for (int v = 0; v < gpu::kGemvVariants; ++v)
    for (int m : {1, 2, 4, 6})
      for (auto [n, k] : {std::pair{65, 64}, std::pair{1536, 576}, std::pair{1000, 4096}, std::pair{513, 4104}})
        check_shape(*gemm, m, n, k, Path::kGemvVariant, rng, 0, v);
}

// Every tensor-core small-M variant, M across token tiles (1-8, 9-16, ... 64),
// K a whole number of 32-wide steps and not (the tail: K % 32 of 8, 16, 24),
// N not a multiple of the 16 or 32 rows a block owns, K split over 1-8 warps.
TEST(GemmGpu, GemvMmaVariantsMatchFloat64Reference) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(505);
  const std::pair<int, int> shapes[] = {{65, 64},  {1536, 576}, {1000, 4096}, {513, 4104},
                                        {40, 8},   {4096, 1048}, {700, 14336}};
  for (int v = 0; v < gpu::kGemvMmaVariants; ++v)
    for (int m : {1, 3, 5, 8, 9, 16})
      for (auto [n, k] : shapes) check_shape(*gemm, m, n, k, Path::kGemvMmaVariant, rng, 0, v);
  // Past 16 tokens (one form): every count of token tiles, full and not.
  for (int m : {17, 24, 31, 40, 47, 56, 64})
    for (auto [n, k] : shapes) check_shape(*gemm, m, n, k, Path::kGemvMmaVariant, rng, 0, 0);
}

// A row's outputs do not depend on M or on the other rows: each row of an
// M-row call equals, bit for bit, the same row computed alone (M = 1), so
// speculative verify chunks see the logits of decode steps.
TEST(GemmGpu, GemvMmaRowsDoNotDependOnM) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  std::mt19937 rng(606);
  for (auto [n, k] : {std::pair{4096, 4096}, std::pair{1000, 4104}, std::pair{576, 576}}) {
    const int max_m = gpu::kGemvMmaMaxM;
    std::vector<float> x_f, w_f;
    auto x = gputest::random_bf16(static_cast<size_t>(max_m) * k, rng, x_f);
    auto w = gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
    DeviceBuffer<bf16> d_x(static_cast<size_t>(max_m) * k), d_w(static_cast<size_t>(n) * k);
    DeviceBuffer<float> d_y(static_cast<size_t>(max_m) * n);
    d_x.upload(x);
    d_w.upload(w);
    std::vector<std::vector<float>> alone(max_m);
    for (int r = 0; r < max_m; ++r) {
      ASSERT_TRUE(gpu::gemv_mma(d_x.get() + static_cast<size_t>(r) * k, d_w.get(), nullptr, d_y.get(), true, 1, n, k,
                                nullptr)
                      .ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      alone[r] = d_y.download();
      alone[r].resize(n);
    }
    for (int m : {2, 5, 8, 9, 13, 16, 24, 40, 57, 64}) {
      d_y.poison();
      ASSERT_TRUE(gpu::gemv_mma(d_x.get(), d_w.get(), nullptr, d_y.get(), true, m, n, k, nullptr).ok());
      ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);
      const std::vector<float> got = d_y.download();
      for (int r = 0; r < m; ++r)
        for (int c = 0; c < n; ++c)
          ASSERT_EQ(got[static_cast<size_t>(r) * n + c], alone[r][c])
              << "N=" << n << " K=" << k << " M=" << m << " row " << r << " col " << c;
    }
  }
}

// Shapes off the fast paths: N not a multiple of the rows a warp owns, K not a
// multiple of 8 (cuBLASLt fallback), a 2-byte aligned x (cuBLASLt with a lower
// alignment preference), and the largest vocab-like N.
TEST(GemmGpu, EdgeShapes) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(303);
  check_shape(*gemm, 1, 65, 64, Path::kDispatch, rng);
  check_shape(*gemm, 7, 1001, 200, Path::kDispatch, rng);
  check_shape(*gemm, 3, 100, 100, Path::kDispatch, rng);
  check_shape(*gemm, 17, 333, 72, Path::kDispatch, rng);
  check_shape(*gemm, 4, 512, 576, Path::kDispatch, rng, /*x_offset=*/1);
  check_shape(*gemm, 33, 512, 576, Path::kDispatch, rng, /*x_offset=*/1);
  check_shape(*gemm, 2, 49152, 576, Path::kDispatch, rng);
}

// On sm_90+ the decode kernels launch as programmatic dependents (pdl.cuh):
// the build's sm_90a code is the one that runs, so kernel_has_pdl says yes.
// (Were it no, decode would silently lose its early hand-overs.)
TEST(GemmGpu, DecodeGemvLaunchesAsDependentOnSm90) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  int dev = 0, major = 0;
  ASSERT_EQ(cudaGetDevice(&dev), cudaSuccess);
  ASSERT_EQ(cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev), cudaSuccess);
  EXPECT_EQ(gpu::gemv_launches_as_dependent(), major == 9) << "compute capability major " << major;
}

// linear() inside stream capture (global mode: any allocation or sync in it
// would invalidate the capture): a shape first seen during capture (its
// cuBLASLt plan is built then) and a gemv shape; the replay must reproduce the
// eager results.
TEST(GemmGpu, GraphCaptureMatchesEager) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  std::mt19937 rng(404);
  const int n = 1536, k = 576;
  std::vector<float> x_f, w_f;
  auto x = gputest::random_bf16(static_cast<size_t>(16) * k, rng, x_f);
  auto w = gputest::random_bf16(static_cast<size_t>(n) * k, rng, w_f, 0.05f);
  DeviceBuffer<bf16> d_x(x.size()), d_w(w.size()), d_y16(static_cast<size_t>(16) * n);
  DeviceBuffer<float> d_y32(static_cast<size_t>(2) * n);
  d_x.upload(x);
  d_w.upload(w);
  cudaStream_t stream = nullptr;
  ASSERT_EQ(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), cudaSuccess);
  auto run = [&]() {
    EXPECT_TRUE(gemm->linear(d_x.get(), d_w.get(), nullptr, d_y16.get(), false, 16, n, k, stream).ok());
    EXPECT_TRUE(gemm->linear(d_x.get(), d_w.get(), nullptr, d_y32.get(), true, 2, n, k, stream).ok());
  };
  d_y16.poison();
  d_y32.poison();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the memsets ran on the legacy stream
  ASSERT_EQ(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal), cudaSuccess);
  run();
  cudaGraph_t graph = nullptr;
  ASSERT_EQ(cudaStreamEndCapture(stream, &graph), cudaSuccess);
  cudaGraphExec_t exec = nullptr;
  ASSERT_EQ(cudaGraphInstantiate(&exec, graph, 0), cudaSuccess);
  ASSERT_EQ(cudaGraphLaunch(exec, stream), cudaSuccess);
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const auto graph16 = to_floats(d_y16.download());
  const auto graph32 = d_y32.download();
  d_y16.poison();
  d_y32.poison();
  ASSERT_EQ(cudaDeviceSynchronize(), cudaSuccess);  // the memsets ran on the legacy stream
  run();
  ASSERT_EQ(cudaStreamSynchronize(stream), cudaSuccess);
  const auto e16 = compare(graph16, to_floats(d_y16.download()));
  const auto e32 = compare(graph32, d_y32.download());
  EXPECT_EQ(e16.non_finite + e32.non_finite, 0);
  EXPECT_LT(e16.rel_l2, 1e-6);
  EXPECT_LT(e32.rel_l2, 1e-6);
  // And the eager results are right (the graph could not have been).
  std::vector<float> x2(x_f.begin(), x_f.begin() + 2 * k);
  const auto ref = reference(x2, w_f, 2, n, k);
  EXPECT_LT(compare(graph32, ref).rel_l2, 1e-3);
  cudaGraphExecDestroy(exec);
  cudaGraphDestroy(graph);
  cudaStreamDestroy(stream);
}

// Zero-sized work enqueues nothing and succeeds; bad arguments are Errors.
TEST(GemmGpu, EmptyAndInvalidShapes) {
  ASSERT_NO_FATAL_FAILURE(gputest::require_gpu());
  auto gemm = make_gemm();
  ASSERT_TRUE(gemm);
  DeviceBuffer<bf16> buf(64);
  EXPECT_TRUE(gemm->linear(buf.get(), buf.get(), nullptr, buf.get(), false, 0, 8, 8, nullptr).ok());
  EXPECT_FALSE(gemm->linear(buf.get(), buf.get(), nullptr, buf.get(), false, -1, 8, 8, nullptr).ok());
  EXPECT_FALSE(gpu::gemv(buf.get(), buf.get(), nullptr, buf.get(), false, 9, 8, 8, nullptr).ok());
  EXPECT_FALSE(gpu::gemv(buf.get(), buf.get(), nullptr, buf.get(), false, 1, 8, 12, nullptr).ok());
}

}  // namespace
}  // namespace ember
