#pragma once
// A grammar compiled against one vocabulary: for every automaton state with
// byte edges, which tokens (starting with one of those bytes) are accepted
// whatever the stack below the state holds, and which depend on it (they run
// past the end of the state's rule). Computed once per grammar by walking a
// trie of the vocabulary's bytes from each state (xgrammar's "context-
// independent tokens"); at each step only the context-dependent tokens are
// checked against the real stack (grammar_matcher.h).

#include <cstdint>
#include <future>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"
#include "engine/structured/grammar.h"

namespace ember::structured {

// The vocabulary as bytes, and a trie over them. Tokens with no bytes
// (special and control tokens) are never allowed by a grammar; the end-of-
// sequence ids are allowed where the grammar may end.
class Vocabulary {
 public:
  Vocabulary(std::vector<std::string> token_bytes, std::vector<int32_t> eos_ids);
  int32_t size() const { return static_cast<int32_t>(bytes_.size()); }
  size_t max_token_bytes() const { return max_bytes_; }
  const std::string& bytes(int32_t id) const { return bytes_[static_cast<size_t>(id)]; }
  const std::vector<int32_t>& eos_ids() const { return eos_; }

  struct TrieNode {
    uint32_t first_child = 0, num_children = 0;  // into nodes(), sorted by byte
    uint8_t byte = 0;
    int32_t token = -1;        // the token whose bytes end here, or -1
    uint32_t subtree_end = 0;  // nodes [this + 1, subtree_end) are its descendants (preorder)
  };
  const std::vector<TrieNode>& trie() const { return trie_; }
  // Tokens whose bytes equal an earlier token's: (that token, this one). The trie holds the first only.
  const std::vector<std::pair<int32_t, int32_t>>& duplicates() const { return duplicates_; }

 private:
  std::vector<std::string> bytes_;
  std::vector<int32_t> eos_;
  std::vector<TrieNode> trie_;  // node 0 is the root (no byte)
  std::vector<std::pair<int32_t, int32_t>> duplicates_;
  size_t max_bytes_ = 0;
};

// A bitset over the vocabulary: bit t set means token t may be sampled.
using TokenBitmask = std::vector<uint32_t>;
inline size_t bitmask_words(int32_t vocab_size) { return (static_cast<size_t>(vocab_size) + 31) / 32; }

struct StateTokens {
  // Accepted whatever the stack: as a bitmask when many, as a sorted list when few.
  TokenBitmask accepted_bits;
  std::vector<int32_t> accepted;
  std::vector<int32_t> uncertain;  // run past the rule's end: checked against the stack
};

class CompiledGrammar {
 public:
  // An Error past limits.max_precompute_steps.
  static Result<std::shared_ptr<const CompiledGrammar>> compile(std::shared_ptr<const Grammar> grammar,
                                                                std::shared_ptr<const Vocabulary> vocab,
                                                                const GrammarLimits& limits = {});
  const Grammar& grammar() const { return *grammar_; }
  const Vocabulary& vocab() const { return *vocab_; }
  // Empty for states without byte edges.
  const StateTokens& tokens(uint32_t state) const { return tables_[table_of_[state]]; }
  size_t num_tables() const { return tables_.size(); }
  // What its tables and automaton hold (the cache's bound counts it).
  size_t memory_bytes() const;

 private:
  std::shared_ptr<const Grammar> grammar_;
  std::shared_ptr<const Vocabulary> vocab_;
  // States that no token can tell apart share a table (see share_tables in the .cpp); table 0 is empty.
  std::vector<uint32_t> table_of_;
  std::vector<StateTokens> tables_;
};

// GBNF text -> CompiledGrammar for one vocabulary, the most recent kept while
// they number at most `capacity` and hold at most `max_bytes` (a schema sent
// with every request compiles once; a client sending new ones cannot grow it
// past the bound). Thread-safe. A text asked for by several threads while it
// compiles compiles once: the others wait for that compile (a batch of requests
// with one new grammar would otherwise compile it once per request, all at once).
class GrammarCache {
 public:
  using Compiled = Result<std::shared_ptr<const CompiledGrammar>>;
  GrammarCache(std::shared_ptr<const Vocabulary> vocab, size_t capacity = 64, GrammarLimits limits = {},
               size_t max_bytes = size_t{512} << 20);
  Compiled get(const std::string& gbnf);
  const Vocabulary& vocab() const { return *vocab_; }
  // Compiles run so far (errors included).
  int64_t num_compiles() const;

 private:
  std::shared_ptr<const Vocabulary> vocab_;
  size_t capacity_;
  GrammarLimits limits_;
  size_t max_bytes_, bytes_ = 0;
  int64_t compiles_ = 0;
  mutable std::mutex mu_;
  std::list<std::pair<std::string, std::shared_ptr<const CompiledGrammar>>> lru_;  // most recent first
  std::unordered_map<std::string, decltype(lru_)::iterator> index_;
  std::unordered_map<std::string, std::shared_future<Compiled>> compiling_;  // not in index_ yet
};

}  // namespace ember::structured
