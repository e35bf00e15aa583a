#include "loadgen/dataset.h"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

namespace ember {
namespace {

using json = nlohmann::json;

// vLLM's random lengths: uniform integers in [L(1-r), L(1+r)], at least 1.
int64_t draw_len(std::mt19937_64& rng, int64_t len, double ratio) {
  const int64_t lo = std::max<int64_t>(1, static_cast<int64_t>(std::floor(static_cast<double>(len) * (1 - ratio))));
  const int64_t hi = std::max(lo, static_cast<int64_t>(std::ceil(static_cast<double>(len) * (1 + ratio))));
  return std::uniform_int_distribution<int64_t>(lo, hi)(rng);
}

Result<std::string> read_file(const std::string& path, const char* what) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error{std::string(what) + " " + path + ": cannot open"};
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

Result<std::vector<BenchRequest>> random_dataset(const DatasetOptions& o, TokenCounter& counter) {
  std::mt19937_64 rng(o.seed);
  std::vector<BenchRequest> out;
  for (int64_t i = 0; i < o.num_prompts; ++i) {
    BenchRequest r;
    r.index = i;
    const int64_t in_len = draw_len(rng, o.input_len, o.range_ratio);
    r.max_tokens = draw_len(rng, o.output_len, o.range_ratio);
    auto text = exact_token_suffix(counter, "", in_len, rng(), &r.prompt_len);
    if (!text) return text.error();
    r.prompt = std::move(text).value();
    out.push_back(std::move(r));
  }
  return out;
}

Result<std::vector<BenchRequest>> prefix_dataset(const DatasetOptions& o, TokenCounter& counter) {
  if (o.num_prefix_groups <= 0 || o.prefix_len <= 0) return Error{"prefix dataset: --prefix-len and --num-prefix-groups must be > 0"};
  std::mt19937_64 rng(o.seed);
  std::vector<std::string> prefixes;
  for (int64_t g = 0; g < o.num_prefix_groups; ++g) {
    int64_t n = 0;
    auto text = exact_token_suffix(counter, "", o.prefix_len, rng(), &n);
    if (!text) return text.error();
    prefixes.push_back(std::move(text).value());
  }
  std::vector<BenchRequest> out;
  for (int64_t i = 0; i < o.num_prompts; ++i) {
    BenchRequest r;
    r.index = i;
    const std::string& prefix = prefixes[static_cast<size_t>(i % o.num_prefix_groups)];
    auto prefix_ids = counter.encode(prefix);
    if (!prefix_ids) return prefix_ids.error();
    const int64_t target = static_cast<int64_t>(prefix_ids->size()) + draw_len(rng, o.input_len, o.range_ratio);
    auto suffix = exact_token_suffix(counter, prefix, target, rng(), &r.prompt_len);
    if (!suffix) return suffix.error();
    r.prompt = prefix + *suffix;
    r.max_tokens = draw_len(rng, o.output_len, o.range_ratio);
    out.push_back(std::move(r));
  }
  // Groups interleave in a shuffled order, so a prefix is rarely reused by the request right after it.
  std::shuffle(out.begin(), out.end(), rng);
  for (size_t i = 0; i < out.size(); ++i) out[i].index = static_cast<int64_t>(i);
  return out;
}

Result<std::vector<BenchRequest>> sharegpt_dataset(const DatasetOptions& o, TokenCounter& counter) {
  auto bytes = read_file(o.path, "--dataset-path");
  if (!bytes) return bytes.error();
  json data = json::parse(*bytes, nullptr, false);
  if (data.is_discarded() || !data.is_array()) return Error{"--dataset-path " + o.path + ": not a JSON array (ShareGPT format)"};
  std::vector<std::pair<std::string, std::string>> pairs;
  for (const json& entry : data) {
    if (!entry.is_object()) continue;
    auto conv = entry.find("conversations");
    if (conv == entry.end() || !conv->is_array() || conv->size() < 2) continue;
    const json &a = (*conv)[0], &b = (*conv)[1];
    if (!a.is_object() || !b.is_object() || !a.contains("value") || !b.contains("value") || !a["value"].is_string() ||
        !b["value"].is_string()) {
      continue;
    }
    pairs.emplace_back(a["value"].get<std::string>(), b["value"].get<std::string>());
  }
  std::mt19937_64 rng(o.seed);
  std::shuffle(pairs.begin(), pairs.end(), rng);
  std::vector<BenchRequest> out;
  for (const auto& [prompt, reply] : pairs) {
    if (static_cast<int64_t>(out.size()) >= o.num_prompts) break;
    auto p = counter.encode(prompt);
    if (!p) return p.error();
    int64_t out_len = o.output_len;
    if (out_len <= 0) {
      auto c = counter.encode(reply);
      if (!c) return c.error();
      out_len = static_cast<int64_t>(c->size());
    }
    const auto in_len = static_cast<int64_t>(p->size());
    if (in_len < 4 || out_len < 4 || in_len > 1024 || in_len + out_len > 2048) continue;
    out.push_back({static_cast<int64_t>(out.size()), prompt, in_len, out_len});
  }
  if (static_cast<int64_t>(out.size()) < o.num_prompts) {
    return Error{"--dataset-path " + o.path + ": only " + std::to_string(out.size()) + " usable conversations, " +
                 std::to_string(o.num_prompts) + " asked for"};
  }
  return out;
}

Result<std::vector<BenchRequest>> jsonl_dataset(const DatasetOptions& o, TokenCounter& counter) {
  std::ifstream in(o.path);
  if (!in) return Error{"--dataset-path " + o.path + ": cannot open"};
  std::vector<BenchRequest> out;
  std::string line;
  for (int64_t line_no = 1; static_cast<int64_t>(out.size()) < o.num_prompts && std::getline(in, line); ++line_no) {
    if (line.find_first_not_of(" \t\r") == std::string::npos) continue;
    const std::string where = o.path + ":" + std::to_string(line_no);
    json j = json::parse(line, nullptr, false);
    if (j.is_discarded() || !j.is_object()) return Error{where + ": not a JSON object"};
    auto p = j.find("prompt");
    if (p == j.end() || !p->is_string()) return Error{where + ": no \"prompt\" string"};
    BenchRequest r;
    r.index = static_cast<int64_t>(out.size());
    r.prompt = p->get<std::string>();
    r.max_tokens = o.output_len > 0 ? o.output_len : 128;
    for (const char* key : {"max_tokens", "output_len"}) {
      if (auto it = j.find(key); it != j.end()) {
        if (!it->is_number_integer() || it->get<int64_t>() <= 0) return Error{where + ": \"" + key + "\" must be a positive integer"};
        r.max_tokens = it->get<int64_t>();
      }
    }
    auto ids = counter.encode(r.prompt);
    if (!ids) return ids.error();
    r.prompt_len = static_cast<int64_t>(ids->size());
    out.push_back(std::move(r));
  }
  if (out.empty()) return Error{"--dataset-path " + o.path + ": no prompts"};
  // Fewer lines than prompts: cycle through them, as a replayed trace would.
  for (size_t i = 0, n = out.size(); static_cast<int64_t>(out.size()) < o.num_prompts; ++i) {
    BenchRequest r = out[i % n];
    r.index = static_cast<int64_t>(out.size());
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

Result<std::string> exact_token_suffix(TokenCounter& counter, const std::string& prefix_text, int64_t target,
                                       uint64_t seed, int64_t* total_tokens) {
  const std::vector<int32_t>& pool = counter.id_pool();
  if (pool.empty()) return Error{"the tokenizer has no ordinary tokens to draw prompts from"};
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<size_t> pick(0, pool.size() - 1);
  auto base = counter.encode(prefix_text);
  if (!base) return base.error();
  std::vector<int32_t> ids;
  auto append = [&](int64_t n) {
    for (int64_t i = 0; i < n; ++i) ids.push_back(pool[pick(rng)]);
  };
  append(std::max<int64_t>(1, target - static_cast<int64_t>(base->size())));
  std::string best;
  int64_t best_count = -1;
  // Decoding then re-encoding merges or splits tokens at random: a few rounds
  // of adding or dropping ids at the end converge on the exact count.
  for (int round = 0; round < 32; ++round) {
    auto text = counter.decode(ids);
    if (!text) return text.error();
    auto enc = counter.encode(prefix_text + *text);
    if (!enc) return enc.error();
    const auto n = static_cast<int64_t>(enc->size());
    if (best_count < 0 || std::llabs(n - target) < std::llabs(best_count - target)) {
      best = *text;
      best_count = n;
    }
    if (n == target) break;
    if (n < target) {
      append(target - n);
    } else {
      const auto drop = std::min<int64_t>(n - target, static_cast<int64_t>(ids.size()) - 1);
      if (drop <= 0) break;
      ids.resize(ids.size() - static_cast<size_t>(drop));
    }
  }
  *total_tokens = best_count;
  return best;
}

Result<std::vector<BenchRequest>> build_dataset(const DatasetOptions& o, TokenCounter& counter) {
  if (o.num_prompts <= 0) return Error{"--num-prompts must be > 0"};
  if (o.range_ratio < 0 || o.range_ratio >= 1) return Error{"--random-range-ratio must be in [0, 1)"};
  if (o.name == "random") return random_dataset(o, counter);
  if (o.name == "prefix") return prefix_dataset(o, counter);
  if (o.name == "sharegpt" || o.name == "jsonl") {
    if (o.path.empty()) return Error{"--dataset " + o.name + " needs --dataset-path"};
    return o.name == "sharegpt" ? sharegpt_dataset(o, counter) : jsonl_dataset(o, counter);
  }
  return Error{"--dataset '" + o.name + "': expected random, sharegpt, prefix or jsonl"};
}

}  // namespace ember
