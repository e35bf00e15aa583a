// Token masks on a real vocabulary (the default model, SmolLM2's 49k byte-level
// BPE tokens, multi-byte and partial UTF-8 pieces among them) against brute
// force: every token's bytes run through the grammar, at each step of walks
// that take long tokens, so strings, keys, numbers and the ends of rules are all
// crossed by tokens of many shapes.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <random>

#include "engine/structured/grammar_matcher.h"
#include "engine/structured/json_schema.h"
#include "engine/structured/regex.h"
#include "models/formats/gguf.h"
#include "models/tokenizer/tokenizer.h"

namespace ember::structured {
namespace {

std::string default_model_path() {
  if (const char* env = std::getenv("EMBER_DEFAULT_MODEL"); env && *env) return env;
  const char* home = std::getenv("HOME");
  return std::string(home ? home : "") + "/.cache/ember/models/SmolLM2-135M-Instruct.Q4_1.gguf";
}

std::shared_ptr<const Vocabulary> smollm2_vocab() {
  const std::string path = default_model_path();
  if (!std::filesystem::exists(path)) return nullptr;
  auto file = GgufFile::open(path);
  if (!file.ok()) return nullptr;
  auto tok = load_tokenizer_from_gguf(*file);
  if (!tok.ok()) return nullptr;
  std::vector<std::string> bytes(static_cast<size_t>((*tok)->vocab_size()));
  for (int32_t id = 0; id < (*tok)->vocab_size(); ++id)
    if (!(*tok)->is_special(id)) bytes[static_cast<size_t>(id)] = (*tok)->token_bytes(id);
  return std::make_shared<Vocabulary>(std::move(bytes), std::vector<int32_t>{(*tok)->eos_id()});
}

void walk_and_compare(const std::string& gbnf, const std::shared_ptr<const Vocabulary>& vocab, int steps,
                      uint64_t seed) {
  auto g = Grammar::parse(gbnf);
  ASSERT_TRUE(g.ok()) << g.error().message;
  auto compiled = CompiledGrammar::compile(*g, vocab);
  ASSERT_TRUE(compiled.ok()) << compiled.error().message;
  GrammarMatcher m(*compiled);
  std::mt19937_64 rng(seed);
  std::vector<uint32_t> mask(bitmask_words(vocab->size()));
  const int32_t eos = vocab->eos_ids()[0];
  int multibyte = 0;
  for (int s = 0; s < steps; ++s) {
    m.fill_mask(mask.data());
    const bool ended = m.ended();
    std::vector<int32_t> allowed;
    for (int32_t t = 0; t < vocab->size(); ++t) {
      const bool bit = (mask[static_cast<size_t>(t) >> 5] >> (t & 31)) & 1;
      const std::string& b = vocab->bytes(t);
      const bool expect = t == eos ? m.can_end() || ended : !b.empty() && !ended && m.accepts_bytes(b);
      ASSERT_EQ(bit, expect) << "step " << s << " token " << t << " '" << b << "'";
      if (bit) allowed.push_back(t);
    }
    ASSERT_FALSE(allowed.empty());
    // Prefer long tokens half the time, so walks cross rule ends inside one token.
    int32_t pick = allowed[rng() % allowed.size()];
    if (rng() % 2)
      for (int k = 0; k < 64; ++k) {
        const int32_t c = allowed[rng() % allowed.size()];
        if (vocab->bytes(c).size() > vocab->bytes(pick).size()) pick = c;
      }
    for (unsigned char c : vocab->bytes(pick)) multibyte += c >= 0x80;
    ASSERT_TRUE(m.accept(pick));
    if (pick == eos) break;
  }
  (void)multibyte;
}

TEST(GrammarVocab, SmolLM2MasksEqualBruteForce) {
  auto vocab = smollm2_vocab();
  ASSERT_TRUE(vocab) << "default model missing: " << default_model_path()
                     << " (set EMBER_DEFAULT_MODEL or run scripts/setup.sh)";
  const auto schema = nlohmann::ordered_json::parse(R"({"type": "object", "properties": {
      "name": {"type": "string", "maxLength": 40}, "age": {"type": "integer", "minimum": 0, "maximum": 150},
      "city": {"enum": ["Zürich", "東京", "São Paulo"]}, "tags": {"type": "array", "items": {"type": "string"}},
      "ok": {"type": "boolean"}}, "required": ["name", "age", "city", "tags", "ok"]})");
  auto js = json_schema_grammar(schema);
  ASSERT_TRUE(js.ok()) << js.error().message;
  walk_and_compare(*js, vocab, 24, 1);
  walk_and_compare(*js, vocab, 24, 2);
  walk_and_compare(json_object_grammar(), vocab, 20, 3);
  auto re = regex_grammar(R"((café|naïve|日本語)[ -~]{0,12}\d{2,4})");
  ASSERT_TRUE(re.ok()) << re.error().message;
  walk_and_compare(*re, vocab, 16, 4);
}

}  // namespace
}  // namespace ember::structured
