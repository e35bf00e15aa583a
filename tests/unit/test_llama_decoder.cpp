// The Llama-family decoder on the CPU backend:
//  - varlen + paging: a mixed batch (prefill chunk from scratch, a decode and a
//    chunk on top of cached tokens) with shuffled block tables gives the logits
//    of each sequence run alone (tiny_llama.gguf, written by
//    scripts/gen_gguf_fixtures.py: GQA 4/2, q/k/v biases, untied head, linear rope);
//  - the real SmolLM2-135M GGUF answers a fixed chat prompt with "Paris" under
//    greedy decoding, which only happens if the Q/K un-permutation, rope,
//    attention, MLP and tied head are all right.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu_ops.h"
#include "models/formats/gguf.h"
#include "models/llama_decoder.h"
#include "models/model_config.h"
#include "models/tokenizer/tokenizer.h"
#include "models/weights.h"

namespace ember {
namespace {

constexpr int64_t kBlockSize = 4;

// One sequence's share of a step: its whole context, how much of it the cache
// already holds, how many tokens this step runs, and its blocks.
struct SeqStep {
  const std::vector<int32_t>* tokens;
  int32_t cached;
  int32_t q_len;
  std::vector<int32_t> blocks;
};

ForwardInputs make_inputs(const std::vector<SeqStep>& seqs) {
  ForwardInputs in;
  size_t max_blocks = 0;
  for (const SeqStep& s : seqs) max_blocks = std::max(max_blocks, s.blocks.size());
  in.max_blocks_per_seq = static_cast<int32_t>(max_blocks);
  in.query_start_loc.push_back(0);
  for (const SeqStep& s : seqs) {
    for (int32_t i = 0; i < s.q_len; ++i) {
      const int32_t pos = s.cached + i;
      in.token_ids.push_back((*s.tokens)[static_cast<size_t>(pos)]);
      in.positions.push_back(pos);
      in.slot_mapping.push_back(static_cast<int64_t>(s.blocks[static_cast<size_t>(pos / kBlockSize)]) * kBlockSize +
                                pos % kBlockSize);
      in.logits_indices.push_back(static_cast<int32_t>(in.token_ids.size()) - 1);
    }
    in.query_start_loc.push_back(static_cast<int32_t>(in.token_ids.size()));
    in.seq_lens.push_back(s.cached + s.q_len);
    std::vector<int32_t> row = s.blocks;
    row.resize(max_blocks, 0);
    in.block_tables.insert(in.block_tables.end(), row.begin(), row.end());
  }
  return in;
}

std::vector<int32_t> seq_blocks(int32_t first, int32_t count) {
  std::vector<int32_t> b(static_cast<size_t>(count));
  std::iota(b.begin(), b.end(), first);
  return b;
}

// Logits of every position of `tokens`, run alone in a fresh cache: all at once
// or one token per step.
std::vector<float> run_alone(LlamaDecoder& dec, const std::vector<int32_t>& tokens, bool token_by_token) {
  const int32_t n = static_cast<int32_t>(tokens.size());
  const int32_t nb = (n + kBlockSize - 1) / kBlockSize;
  KvCache cache = KvCache::allocate(dec.config(), nb, kBlockSize);
  std::vector<float> all, logits;
  if (!token_by_token) {
    dec.forward(make_inputs({{&tokens, 0, n, seq_blocks(0, nb)}}), cache, all);
    return all;
  }
  for (int32_t i = 0; i < n; ++i) {
    dec.forward(make_inputs({{&tokens, i, 1, seq_blocks(0, nb)}}), cache, logits);
    all.insert(all.end(), logits.begin(), logits.end());
  }
  return all;
}

// max |a - b| over a row <= tol * max |ref| over that row.
void expect_rows_close(const float* got, const float* ref, int64_t rows, int64_t cols, double tol,
                       const std::string& what) {
  for (int64_t r = 0; r < rows; ++r) {
    double diff = 0, mag = 0;
    for (int64_t c = 0; c < cols; ++c) {
      diff = std::max(diff, std::fabs(static_cast<double>(got[r * cols + c]) - ref[r * cols + c]));
      mag = std::max(mag, std::fabs(static_cast<double>(ref[r * cols + c])));
    }
    EXPECT_LE(diff, tol * mag) << what << " row " << r;
  }
}

TEST(LlamaDecoder, VarlenPagedBatchMatchesSequencesRunAlone) {
  Result<GgufFile> f = GgufFile::open(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_llama.gguf");
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> config = model_config_from_gguf(*f);
  ASSERT_TRUE(config.ok()) << config.error().message;
  ASSERT_TRUE(config->attention_bias);
  ASSERT_FALSE(config->tie_word_embeddings);
  ASSERT_LT(config->num_kv_heads, config->num_heads);
  Result<LlamaWeights> w = load_llama_weights(*f, *config);
  ASSERT_TRUE(w.ok()) << w.error().message;
  CpuBackend backend(2);
  LlamaDecoder dec(*w, backend);
  const int64_t vocab = config->vocab_size;

  std::mt19937 rng(7);
  auto random_tokens = [&](int n) {
    std::vector<int32_t> t(static_cast<size_t>(n));
    for (int32_t& x : t) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(vocab));
    return t;
  };
  const std::vector<int32_t> a = random_tokens(7), b = random_tokens(13), c = random_tokens(14);
  const std::vector<float> ref_a = run_alone(dec, a, false), ref_b = run_alone(dec, b, false),
                           ref_c = run_alone(dec, c, false);
  // Chunked prefill and token-by-token decode agree with one-shot prefill.
  const std::vector<float> a_steps = run_alone(dec, a, true);
  expect_rows_close(a_steps.data(), ref_a.data(), 7, vocab, 1e-5, "a token by token");
  ASSERT_EQ(ref_a.size(), static_cast<size_t>(7 * vocab));

  // Shared cache with shuffled block ids: a 2 blocks, b 4, c 4, out of 16.
  std::vector<int32_t> ids(16);
  std::iota(ids.begin(), ids.end(), 0);
  std::shuffle(ids.begin(), ids.end(), rng);
  const std::vector<int32_t> blocks_a(ids.begin(), ids.begin() + 2), blocks_b(ids.begin() + 2, ids.begin() + 6),
      blocks_c(ids.begin() + 6, ids.begin() + 10);
  KvCache cache = KvCache::allocate(*config, 16, kBlockSize);
  std::vector<float> logits;
  // Fill the cache: b's first 12 one token at a time, c's first 9 as one chunk.
  for (int32_t i = 0; i < 12; ++i) dec.forward(make_inputs({{&b, i, 1, blocks_b}}), cache, logits);
  dec.forward(make_inputs({{&c, 0, 9, blocks_c}}), cache, logits);
  expect_rows_close(logits.data(), ref_c.data(), 9, vocab, 1e-5, "c chunk of 9");

  dec.forward(make_inputs({{&a, 0, 7, blocks_a}, {&b, 12, 1, blocks_b}, {&c, 9, 5, blocks_c}}), cache, logits);
  ASSERT_EQ(logits.size(), static_cast<size_t>(13 * vocab));
  expect_rows_close(logits.data(), ref_a.data(), 7, vocab, 1e-5, "a prefill in batch");
  expect_rows_close(logits.data() + 7 * vocab, ref_b.data() + 12 * vocab, 1, vocab, 1e-5, "b decode in batch");
  expect_rows_close(logits.data() + 8 * vocab, ref_c.data() + 9 * vocab, 5, vocab, 1e-5, "c chunk in batch");

  // logits_indices selects rows: only b's decode row.
  ForwardInputs one = make_inputs({{&b, 12, 1, blocks_b}});
  KvCache fresh = KvCache::allocate(*config, 16, kBlockSize);
  for (int32_t i = 0; i < 12; ++i) dec.forward(make_inputs({{&b, i, 1, blocks_b}}), fresh, logits);
  dec.forward(one, fresh, logits);
  ASSERT_EQ(logits.size(), static_cast<size_t>(vocab));
  expect_rows_close(logits.data(), ref_b.data() + 12 * vocab, 1, vocab, 1e-5, "b decode alone");
}

// The fused q/k/v path (one projection over stacked weights, then
// qkv_rope_and_cache_write; what the CUDA runner uses) gives the logits of the
// separate projections, on a mixed prefill + decode step with biases and GQA.
TEST(LlamaDecoder, FusedQkvProjectionMatchesSeparateProjections) {
  Result<GgufFile> f = GgufFile::open(std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_llama.gguf");
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> config = model_config_from_gguf(*f);
  ASSERT_TRUE(config.ok()) << config.error().message;
  Result<LlamaWeights> w = load_llama_weights(*f, *config);
  ASSERT_TRUE(w.ok()) << w.error().message;
  ASSERT_TRUE(config->attention_bias);

  DecoderWeights fused = host_weight_views(*w);
  std::vector<std::vector<uint8_t>> stacked;  // owns the stacked matrices and biases
  for (size_t l = 0; l < w->layers.size(); ++l) {
    const LayerWeights& lw = w->layers[l];
    ASSERT_TRUE(lw.wq.dtype == lw.wk.dtype && lw.wk.dtype == lw.wv.dtype);
    std::vector<uint8_t> m, b;
    for (const WeightMatrix* part : {&lw.wq, &lw.wk, &lw.wv}) {
      const Tensor t = part->view();
      const auto* bytes = static_cast<const uint8_t*>(t.data);
      m.insert(m.end(), bytes, bytes + part->rows * dtype_row_bytes(part->dtype, part->cols));
    }
    for (const std::vector<float>* part : {&lw.bq, &lw.bk, &lw.bv}) {
      const auto* bytes = reinterpret_cast<const uint8_t*>(part->data());
      b.insert(b.end(), bytes, bytes + part->size() * sizeof(float));
    }
    stacked.push_back(std::move(m));
    stacked.push_back(std::move(b));
    const int64_t rows = lw.wq.rows + lw.wk.rows + lw.wv.rows;
    fused.layers[l].wqkv = Tensor::typed(stacked[stacked.size() - 2].data(), lw.wq.dtype, rows, lw.wq.cols);
    fused.layers[l].bqkv = Tensor::f32(reinterpret_cast<const float*>(stacked.back().data()), {rows});
  }

  CpuBackend backend(2);
  LlamaDecoder separate(*w, backend), one(fused, backend);
  std::mt19937 rng(11);
  std::vector<int32_t> a(9), b(6);
  for (int32_t& x : a) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(config->vocab_size));
  for (int32_t& x : b) x = static_cast<int32_t>(rng() % static_cast<uint32_t>(config->vocab_size));
  const std::vector<int32_t> blocks_a = seq_blocks(0, 3), blocks_b = seq_blocks(3, 2);
  std::vector<float> ref, got;
  KvCache cache_ref = KvCache::allocate(*config, 8, kBlockSize), cache_got = KvCache::allocate(*config, 8, kBlockSize);
  // b's first 5 tokens cached, then a's 9-token prefill next to b's decode.
  separate.forward(make_inputs({{&b, 0, 5, blocks_b}}), cache_ref, ref);
  one.forward(make_inputs({{&b, 0, 5, blocks_b}}), cache_got, got);
  ASSERT_EQ(got.size(), ref.size());
  expect_rows_close(got.data(), ref.data(), 5, config->vocab_size, 1e-5, "fused qkv, prefill");
  const ForwardInputs step = make_inputs({{&a, 0, 9, blocks_a}, {&b, 5, 1, blocks_b}});
  separate.forward(step, cache_ref, ref);
  one.forward(step, cache_got, got);
  ASSERT_EQ(got.size(), ref.size());
  expect_rows_close(got.data(), ref.data(), 10, config->vocab_size, 1e-5, "fused qkv, mixed step");
  EXPECT_EQ(cache_got.k, cache_ref.k);
  EXPECT_EQ(cache_got.v, cache_ref.v);
}

TEST(LlamaDecoder, RotaryRowUnpermutationInvertsLlamaCppPermute) {
  // llama.cpp's permute: reshape(heads, 2, D/2, cols).swapaxes(1, 2); for D = 4
  // one head's HF rows [r0 r1 r2 r3] are stored as [r0 r2 r1 r3].
  std::vector<float> gguf_rows = {0, 2, 1, 3, 10, 12, 11, 13};  // 2 heads, D = 4, cols = 1
  unpermute_rotary_rows(gguf_rows, 2, 4, 1);
  EXPECT_EQ(gguf_rows, (std::vector<float>{0, 1, 2, 3, 10, 11, 12, 13}));
}

TEST(LlamaDecoder, WeightLoaderNamesMissingAndMisshapenTensors) {
  const std::string fixture = std::string(EMBER_SOURCE_DIR) + "/tests/fixtures/gguf/tiny_llama.gguf";
  Result<GgufFile> f = GgufFile::open(fixture);
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> config = model_config_from_gguf(*f);
  ASSERT_TRUE(config.ok()) << config.error().message;

  ModelConfig more_layers = *config;
  more_layers.num_layers = 3;
  Result<LlamaWeights> w = load_llama_weights(*f, more_layers);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message, fixture + ": tensor 'blk.2.attn_norm.weight' is missing");

  ModelConfig wrong_ffn = *config;
  wrong_ffn.intermediate_size = 96;
  w = load_llama_weights(*f, wrong_ffn);
  ASSERT_FALSE(w.ok());
  EXPECT_EQ(w.error().message,
            fixture + ": tensor 'blk.0.ffn_gate.weight' has ggml shape [64, 128], expected [64, 96]");

  ModelConfig tied = *config;
  tied.tie_word_embeddings = true;  // output.weight is then not read: the head is the embedding
  w = load_llama_weights(*f, tied);
  ASSERT_TRUE(w.ok()) << w.error().message;
  EXPECT_TRUE(w->lm_head.empty());
  EXPECT_EQ(&w->head(), &w->embed);
}

std::string default_model_path() {
  if (const char* env = std::getenv("EMBER_DEFAULT_MODEL"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

int32_t argmax(const std::vector<float>& row) {
  return static_cast<int32_t>(std::max_element(row.begin(), row.end()) - row.begin());
}

TEST(LlamaDecoder, SmolLM2GreedyAnswersParis) {
  const std::string path = default_model_path();
  ASSERT_TRUE(std::filesystem::exists(path))
      << "default model missing: " << path << " (set EMBER_DEFAULT_MODEL or run scripts/setup.sh)";
  Result<GgufFile> f = GgufFile::open(path);
  ASSERT_TRUE(f.ok()) << f.error().message;
  Result<ModelConfig> config = model_config_from_gguf(*f);
  ASSERT_TRUE(config.ok()) << config.error().message;
  Result<std::unique_ptr<Tokenizer>> tok = load_tokenizer_from_gguf(*f);
  ASSERT_TRUE(tok.ok()) << tok.error().message;
  const auto t0 = std::chrono::steady_clock::now();
  Result<LlamaWeights> w = load_llama_weights(*f, *config);
  ASSERT_TRUE(w.ok()) << w.error().message;
  const auto t1 = std::chrono::steady_clock::now();

  CpuBackend backend;
  LlamaDecoder dec(*w, backend);
  const std::vector<int32_t> prompt =
      (*tok)->encode("<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n", false);
  std::vector<int32_t> ctx = prompt;
  const int32_t max_ctx = static_cast<int32_t>(prompt.size()) + 16;
  const int32_t nb = (max_ctx + 15) / 16;
  KvCache cache = KvCache::allocate(*config, nb, 16);
  std::vector<int32_t> blocks(static_cast<size_t>(nb));
  std::iota(blocks.begin(), blocks.end(), 0);

  auto step = [&](int32_t cached, int32_t q_len) {
    ForwardInputs in;
    for (int32_t p = cached; p < cached + q_len; ++p) {
      in.token_ids.push_back(ctx[static_cast<size_t>(p)]);
      in.positions.push_back(p);
      in.slot_mapping.push_back(static_cast<int64_t>(blocks[static_cast<size_t>(p / 16)]) * 16 + p % 16);
    }
    in.query_start_loc = {0, q_len};
    in.seq_lens = {cached + q_len};
    in.block_tables = blocks;
    in.max_blocks_per_seq = nb;
    in.logits_indices = {q_len - 1};
    std::vector<float> logits;
    dec.forward(in, cache, logits);
    return argmax(logits);
  };

  std::vector<int32_t> out;
  out.push_back(step(0, static_cast<int32_t>(prompt.size())));
  const auto t2 = std::chrono::steady_clock::now();
  const auto& eos = config->eos_token_ids;
  while (out.size() < 16 && std::find(eos.begin(), eos.end(), out.back()) == eos.end()) {
    ctx.push_back(out.back());
    out.push_back(step(static_cast<int32_t>(ctx.size()) - 1, 1));
  }
  const auto t3 = std::chrono::steady_clock::now();
  const std::string text = (*tok)->decode(out, true);
  auto secs = [](auto a, auto b) { return std::chrono::duration<double>(b - a).count(); };
  std::printf(
      "SmolLM2 greedy: \"%s\"\n  load %.2f s, prefill %zu tokens %.3f s (%.1f tok/s), decode %zu tokens "
      "%.3f s (%.2f tok/s), %d threads\n",
      text.c_str(), secs(t0, t1), prompt.size(), secs(t1, t2), prompt.size() / secs(t1, t2), out.size() - 1,
      secs(t2, t3), (out.size() - 1) / secs(t2, t3), backend.num_threads());
  EXPECT_NE(text.find("Paris"), std::string::npos) << text;
}

}  // namespace
}  // namespace ember
