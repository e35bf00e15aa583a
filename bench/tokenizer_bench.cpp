// Encode throughput of the byte-level BPE tokenizer (MB/s of input text).
// Input: tests/fixtures/tokenizer/corpus.jsonl (multilingual, code, emoji,
// whitespace runs, special-token strings) joined by newlines and repeated to
// ~1 MB, encoded as one string per iteration without special tokens.
// Tokenizers: the SmolLM2 GGUF vocabulary (EMBER_DEFAULT_MODEL, default
// ~/.cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf) and the Llama 3 /
// Qwen2 fixtures. Compare with HF tokenizers single-thread on the same text
// (numbers in the helper report / bench/results).

#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>

#include <benchmark/benchmark.h>
#include <nlohmann/json.hpp>

#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"

namespace {

std::string bench_text() {
  std::ifstream in(EMBER_SOURCE_DIR "/tests/fixtures/tokenizer/corpus.jsonl");
  std::string line, once;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    const auto j = nlohmann::json::parse(line);
    if (j.contains("text")) once += j["text"].get<std::string>() + "\n";
  }
  std::string text;
  while (!once.empty() && text.size() < (1u << 20)) text += once;
  return text;
}

void run_encode(benchmark::State& state, const ember::Tokenizer& tok) {
  static const std::string text = bench_text();
  size_t tokens = 0;
  for (auto _ : state) {
    auto ids = tok.encode(text, false);
    tokens = ids.size();
    benchmark::DoNotOptimize(ids.data());
  }
  state.SetBytesProcessed(static_cast<int64_t>(state.iterations() * text.size()));
  state.counters["tokens"] = static_cast<double>(tokens);
  state.counters["text_bytes"] = static_cast<double>(text.size());
}

void bm_gguf(benchmark::State& state) {
  const char* env = std::getenv("EMBER_DEFAULT_MODEL");
  const std::string home = std::getenv("HOME") ? std::getenv("HOME") : ".";
  const std::string path = env ? env : home + "/.cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf";
  auto gguf = ember::GgufFile::open(path);
  if (!gguf) return state.SkipWithError(gguf.error().message.c_str());
  auto tok = ember::load_tokenizer_from_gguf(*gguf);
  if (!tok) return state.SkipWithError(tok.error().message.c_str());
  run_encode(state, **tok);
}

void bm_fixture(benchmark::State& state, const char* name) {
  auto tok = ember::load_tokenizer_json(std::string(EMBER_SOURCE_DIR "/tests/fixtures/tokenizer/bpe/") + name);
  if (!tok) return state.SkipWithError(tok.error().message.c_str());
  run_encode(state, **tok);
}

BENCHMARK(bm_gguf)->Name("encode/smollm2_gguf")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_fixture, llama3, "llama3.json")->Name("encode/llama3_fixture")->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(bm_fixture, qwen2, "qwen2.json")->Name("encode/qwen2_fixture")->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
