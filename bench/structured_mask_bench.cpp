// Structured outputs on the CPU: the cost of one token's grammar mask, per
// request, on real vocabularies (SmolLM2's 49k, Llama 3's 128k), over a mix of
// grammars; beside it, in the same run, brute force (every token's bytes run
// through the grammar), the reference the precomputed tables replace.
// Goal (issue 27): under 50 us per token per request on this CPU.
//
// usage: structured_mask_bench TOKENIZER.gguf [TOKENIZER.gguf ...] [--tokens N] [--json]
// Llama 3's vocabulary as a GGUF file comes in llama.cpp's source, which PyPI's llama-cpp-python sdist ships:
//   pip download --no-deps --no-binary :all: llama-cpp-python -d /tmp/lcp && tar -C /tmp/lcp -xzf /tmp/lcp/*.tar.gz
//   --wildcards '*/models/ggml-vocab-llama-bpe.gguf'   (then pass that file)
// Each walk takes the most likely token of a fixed pseudo-random preference among
// the allowed ones, so strings run long and objects close, as a model's would.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "engine/structured/grammar_matcher.h"
#include "engine/structured/json_schema.h"
#include "engine/structured/regex.h"
#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"

using namespace ember;
using namespace ember::structured;
using Clock = std::chrono::steady_clock;

namespace {

double us_since(Clock::time_point t) { return std::chrono::duration<double, std::micro>(Clock::now() - t).count(); }

struct Workload {
  std::string name, gbnf;
};

std::vector<Workload> workloads() {
  std::vector<Workload> w;
  const char* person = R"({"type": "object", "properties": {
      "name": {"type": "string"}, "age": {"type": "integer"}, "email": {"type": "string", "format": "email"},
      "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 8},
      "address": {"type": "object", "properties": {"street": {"type": "string"}, "zip": {"type": "string",
                  "pattern": "^[0-9]{5}$"}}, "required": ["street", "zip"]},
      "status": {"enum": ["active", "inactive", "banned"]}, "score": {"type": "number"}},
      "required": ["name", "age", "tags", "address", "status", "score"]})";
  auto schema = json_schema_grammar(nlohmann::json::parse(person));
  if (schema.ok()) w.push_back({"json_schema(person)", *schema});
  else std::fprintf(stderr, "schema: %s\n", schema.error().message.c_str());
  w.push_back({"json_object", json_object_grammar()});
  auto re = regex_grammar(R"((\+1 )?\(\d{3}\) \d{3}-\d{4}|[A-Za-z ]{1,40} <[a-z.]+@[a-z]+\.(com|org)>)");
  if (re.ok()) w.push_back({"regex(phone|contact)", *re});
  // bench/structured_throughput_bench.py's equal-length regex: loose text that never has to end.
  auto loose = regex_grammar(R"([A-Za-z0-9 ,.'\n-]+)");
  if (loose.ok()) w.push_back({"regex(loose text)", *loose});
  // Every position a new automaton state: what a run with no repeated position costs.
  auto counted = regex_grammar(R"([a-z ]{200,400})");
  if (counted.ok()) w.push_back({"regex(counted run)", *counted});
  w.push_back({"choice(3)", "root ::= \"positive\" | \"negative\" | \"neutral\"\n"});
  return w;
}

struct Stats {
  double compile_ms = 0, mean_us = 0, p50_us = 0, p99_us = 0, brute_us = 0;
  int tokens = 0;
};

Stats run(const Workload& w, const std::shared_ptr<const Vocabulary>& vocab, int max_tokens, bool brute) {
  Stats s;
  const auto t0 = Clock::now();
  auto g = Grammar::parse(w.gbnf);
  if (!g.ok()) {
    std::fprintf(stderr, "%s: %s\n", w.name.c_str(), g.error().message.c_str());
    return s;
  }
  auto compiled = CompiledGrammar::compile(*g, vocab);
  s.compile_ms = us_since(t0) / 1000.0;
  GrammarMatcher m(*compiled);
  std::vector<uint32_t> mask(bitmask_words(vocab->size()));
  std::vector<double> times;
  std::mt19937 rng(7);
  std::vector<uint32_t> preference(static_cast<size_t>(vocab->size()));
  for (auto& p : preference) p = rng();
  double brute_total = 0;
  int brute_n = 0;
  for (int i = 0; i < max_tokens; ++i) {
    const auto t = Clock::now();
    m.fill_mask(mask.data());
    times.push_back(us_since(t));
    if (brute && i % 8 == 0) {  // the reference, on every 8th position (it is slow)
      const auto b = Clock::now();
      int allowed = 0;
      for (int32_t id = 0; id < vocab->size(); ++id) allowed += !vocab->bytes(id).empty() && m.accepts_bytes(vocab->bytes(id));
      brute_total += us_since(b);
      ++brute_n;
      (void)allowed;
    }
    int32_t pick = -1;
    for (int32_t id = 0; id < vocab->size(); ++id)
      if ((mask[static_cast<size_t>(id) >> 5] >> (id & 31)) & 1)
        if (pick < 0 || preference[static_cast<size_t>(id)] > preference[static_cast<size_t>(pick)]) pick = id;
    if (pick < 0 || !m.accept(pick) || m.ended()) break;
  }
  s.tokens = static_cast<int>(times.size());
  double sum = 0;
  for (double t : times) sum += t;
  s.mean_us = sum / std::max<size_t>(1, times.size());
  std::sort(times.begin(), times.end());
  s.p50_us = times[times.size() / 2];
  s.p99_us = times[std::min(times.size() - 1, times.size() * 99 / 100)];
  s.brute_us = brute_n ? brute_total / brute_n : 0;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::string> paths;
  int max_tokens = 256;
  bool as_json = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--tokens") && i + 1 < argc) max_tokens = std::atoi(argv[++i]);
    else if (!std::strcmp(argv[i], "--json")) as_json = true;
    else paths.push_back(argv[i]);
  }
  if (paths.empty()) {
    std::fprintf(stderr, "usage: structured_mask_bench TOKENIZER.gguf [...] [--tokens N] [--json]\n");
    return 2;
  }
  nlohmann::json report = nlohmann::json::array();
  for (const std::string& path : paths) {
    auto file = GgufFile::open(path);
    if (!file.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), file.error().message.c_str());
      return 1;
    }
    auto tok = load_tokenizer_from_gguf(*file);
    if (!tok.ok()) {
      std::fprintf(stderr, "%s: %s\n", path.c_str(), tok.error().message.c_str());
      return 1;
    }
    const Tokenizer& t = **tok;
    std::vector<std::string> bytes(static_cast<size_t>(t.vocab_size()));
    for (int32_t id = 0; id < t.vocab_size(); ++id)
      if (!t.is_special(id)) bytes[static_cast<size_t>(id)] = t.token_bytes(id);
    auto vocab = std::make_shared<Vocabulary>(std::move(bytes), std::vector<int32_t>{t.eos_id()});
    if (!as_json) std::printf("vocabulary %s: %d tokens\n", path.c_str(), vocab->size());
    for (const Workload& w : workloads()) {
      const Stats s = run(w, vocab, max_tokens, true);
      const double ratio = s.mean_us / 50.0;
      if (as_json) {
        report.push_back({{"vocab", path}, {"vocab_size", vocab->size()}, {"grammar", w.name},
                          {"compile_ms", s.compile_ms}, {"tokens", s.tokens}, {"mask_us_mean", s.mean_us},
                          {"mask_us_p50", s.p50_us}, {"mask_us_p99", s.p99_us}, {"brute_force_us", s.brute_us},
                          {"speedup_vs_brute_force", s.mean_us > 0 ? s.brute_us / s.mean_us : 0},
                          {"ratio_to_50us_goal", ratio}});
      } else {
        std::printf("  %-22s compile %8.1f ms  %4d tokens  mask mean %7.1f us  p50 %7.1f  p99 %8.1f  "
                    "(brute force %9.0f us: %6.0fx)  %.2fx the 50 us goal\n",
                    w.name.c_str(), s.compile_ms, s.tokens, s.mean_us, s.p50_us, s.p99_us, s.brute_us,
                    s.mean_us > 0 ? s.brute_us / s.mean_us : 0, ratio);
      }
    }
  }
  if (as_json) std::printf("%s\n", report.dump(2).c_str());
  return 0;
}
