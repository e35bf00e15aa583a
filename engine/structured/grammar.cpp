// GBNF rules to automata: each rule's expression becomes an NFA over byte
// ranges and rule calls (Thompson's construction, code point ranges expanded
// to UTF-8 byte sequences), then a DFA by subset construction. Calls are
// ordinary symbols of the subset construction, so a rule that calls `value`
// from two alternatives still has one state for "after value".

#include "engine/structured/grammar.h"

#include <algorithm>
#include <map>
#include <unordered_map>

#include "engine/structured/gbnf_ast.h"

namespace ember::structured {

class GrammarBuilder {
 public:
  explicit GrammarBuilder(const GrammarLimits& limits) : limits_(limits) {}

  Result<std::shared_ptr<const Grammar>> build(const std::vector<GbnfRule>& rules) {
    auto g = std::make_shared<Grammar>();
    for (const GbnfRule& r : rules) {
      if (ids_.count(r.name)) return Error{"rule '" + r.name + "' is defined twice (line " + std::to_string(r.line) + ")"};
      ids_[r.name] = static_cast<uint32_t>(g->rule_names_.size());
      g->rule_names_.push_back(r.name);
    }
    auto root = ids_.find("root");
    if (root == ids_.end()) return Error{"the grammar has no 'root' rule"};
    g->root_ = root->second;
    g->rule_starts_.resize(rules.size());
    rules_ = &rules;
    choose_inlined(rules);
    for (size_t r = 0; r < rules.size(); ++r) {
      nfa_.clear();
      const int start = new_node(), accept = new_node();
      // An inlined rule is never called: it keeps one dead state.
      if (!inlined_[r]) EMBER_TRY_STATUS(thompson(rules[r].body, start, accept));
      nfa_accept_ = accept;
      EMBER_TRY_STATUS(determinize(static_cast<uint32_t>(r), start, *g));
    }
    EMBER_TRY_STATUS(check_left_recursion(*g));
    return std::shared_ptr<const Grammar>(std::move(g));
  }

 private:
  // Small rules without loops that cannot reach themselves are copied into
  // their callers (GBNF's `char`, `digit`, `hex`): a token running through one
  // would otherwise return from it at every character, and every such return
  // makes the token context-dependent in the precomputed tables. A rule with a
  // loop (`string ::= "\"" char* "\""`) stays one shared set of states: its
  // callers' copies would each cost a walk over the vocabulary to precompute.
  static constexpr int64_t kInlineWeight = 64;
  static constexpr int64_t kMaxWeight = int64_t{1} << 20;  // weights saturate here (only their order matters)

  static void references(const GbnfExpr& e, std::vector<std::string>& out, bool& loops) {
    if (e.kind == GbnfExpr::Kind::kRule) out.push_back(e.rule);
    if (e.kind == GbnfExpr::Kind::kRepeat && e.max < 0) loops = true;
    for (const GbnfExpr& item : e.items) references(item, out, loops);
  }
  int64_t weight(const GbnfExpr& e) const {
    switch (e.kind) {
      case GbnfExpr::Kind::kLiteral: return static_cast<int64_t>(e.literal.size()) + 1;
      case GbnfExpr::Kind::kClass: return static_cast<int64_t>(e.ranges.size()) + 1;
      case GbnfExpr::Kind::kRule: {
        auto it = ids_.find(e.rule);
        return it != ids_.end() && inlined_[it->second] ? weights_[it->second] : 1;
      }
      case GbnfExpr::Kind::kRepeat: {  // (saturating: nested repeats multiply, `x++++...` doubles each time)
        const int64_t inner = weight(e.items[0]);
        const int64_t times = std::max<int64_t>(1, e.max >= 0 ? e.max : e.min + 1);
        return inner >= kMaxWeight / times ? kMaxWeight : std::min<int64_t>(inner * times + 1, kMaxWeight);
      }
      default: {
        int64_t w = 1;
        for (const GbnfExpr& item : e.items) w = std::min<int64_t>(w + weight(item), kMaxWeight);
        return w;
      }
    }
  }
  void choose_inlined(const std::vector<GbnfRule>& rules) {
    const size_t n = rules.size();
    std::vector<std::vector<uint32_t>> refs(n);
    std::vector<char> loops(n, 0);
    for (size_t r = 0; r < n; ++r) {
      std::vector<std::string> names;
      bool loop = false;
      references(rules[r].body, names, loop);
      loops[r] = loop;
      for (const auto& name : names)
        if (auto it = ids_.find(name); it != ids_.end()) refs[r].push_back(it->second);
    }
    // Tarjan's strongly connected components: a rule in a cycle (or calling itself) stays a call.
    std::vector<int> index(n, -1), low(n, 0);
    std::vector<char> on_stack(n, 0), recursive(n, 0);
    std::vector<uint32_t> stack, order;  // order: components finish callees first
    int counter = 0;
    auto connect = [&](auto&& self, uint32_t v) -> void {
      index[v] = low[v] = counter++;
      stack.push_back(v), on_stack[v] = 1;
      for (uint32_t w : refs[v]) {
        if (w == v) recursive[v] = 1;
        if (index[w] < 0) {
          self(self, w);
          low[v] = std::min(low[v], low[w]);
        } else if (on_stack[w]) {
          low[v] = std::min(low[v], index[w]);
        }
      }
      if (low[v] != index[v]) return;
      std::vector<uint32_t> comp;
      for (uint32_t w = 0; w != v;) {
        w = stack.back();
        stack.pop_back(), on_stack[w] = 0;
        comp.push_back(w);
      }
      if (comp.size() > 1)
        for (uint32_t w : comp) recursive[w] = 1;
      order.push_back(v);
      for (uint32_t w : comp)
        if (w != v) order.push_back(w);
    };
    for (uint32_t v = 0; v < n; ++v)
      if (index[v] < 0) connect(connect, v);
    inlined_.assign(n, 0);
    weights_.assign(n, 0);
    for (uint32_t r : order) {  // callees before callers, so a weight counts what is inlined into it
      weights_[r] = weight(rules[r].body);
      bool calls_loop = loops[r];
      for (uint32_t callee : refs[r]) calls_loop = calls_loop || (inlined_[callee] && loops[callee]);
      loops[r] = calls_loop;
      inlined_[r] = !recursive[r] && !loops[r] && r != ids_.at("root") && weights_[r] <= kInlineWeight;
    }
  }

  struct NfaNode {
    std::vector<int> eps;
    std::vector<Grammar::ByteEdge> bytes;  // `to` is an NFA node here
    std::vector<std::pair<uint32_t, int>> calls;
  };

  int new_node() {
    nfa_.emplace_back();
    return static_cast<int>(nfa_.size()) - 1;
  }
  Status count_nodes() {
    if (++total_nodes_ > limits_.max_nfa_nodes)
      return Error{"the grammar is too large (more than " + std::to_string(limits_.max_nfa_nodes) +
                   " automaton nodes once repetitions are expanded)"};
    return {};
  }
  // Bytes of one code point range whose UTF-8 encodings share a length and a
  // prefix structure: [lo, hi] -> byte ranges per position.
  void utf8_sequences(uint32_t lo, uint32_t hi, int from, int to) {
    static constexpr uint32_t kLenMax[] = {0x7F, 0x7FF, 0xFFFF, 0x10FFFF};
    for (int n = 0; n < 4; ++n) {  // split where the encoded length changes
      const uint32_t cap = kLenMax[n];
      if (lo <= cap && hi > cap) {
        utf8_sequences(lo, cap, from, to);
        utf8_sequences(cap + 1, hi, from, to);
        return;
      }
    }
    const int len = lo <= 0x7F ? 1 : lo <= 0x7FF ? 2 : lo <= 0xFFFF ? 3 : 4;
    for (int i = 1; i < len; ++i) {  // split until each continuation position spans a full or fixed range
      const uint32_t m = (1u << (6 * i)) - 1;
      if ((lo & ~m) != (hi & ~m)) {
        if ((lo & m) != 0) {
          utf8_sequences(lo, lo | m, from, to);
          utf8_sequences((lo | m) + 1, hi, from, to);
          return;
        }
        if ((hi & m) != m) {
          utf8_sequences(lo, (hi & ~m) - 1, from, to);
          utf8_sequences(hi & ~m, hi, from, to);
          return;
        }
      }
    }
    auto encode = [len](uint32_t cp, uint8_t* out) {
      if (len == 1) {
        out[0] = static_cast<uint8_t>(cp);
        return;
      }
      static constexpr uint8_t kLead[] = {0, 0, 0xC0, 0xE0, 0xF0};
      for (int i = len - 1; i > 0; --i, cp >>= 6) out[i] = static_cast<uint8_t>(0x80 | (cp & 0x3F));
      out[0] = static_cast<uint8_t>(kLead[len] | cp);
    };
    uint8_t a[4], b[4];
    encode(lo, a), encode(hi, b);
    int at = from;
    for (int i = 0; i < len; ++i) {
      const int next = i + 1 == len ? to : new_node();
      nfa_[static_cast<size_t>(at)].bytes.push_back({a[i], b[i], static_cast<uint32_t>(next)});
      at = next;
    }
  }

  Status thompson(const GbnfExpr& e, int from, int to) {
    EMBER_TRY_STATUS(count_nodes());
    switch (e.kind) {
      case GbnfExpr::Kind::kSequence: {
        int at = from;
        for (size_t i = 0; i < e.items.size(); ++i) {
          const int next = i + 1 == e.items.size() ? to : new_node();
          EMBER_TRY_STATUS(thompson(e.items[i], at, next));
          at = next;
        }
        if (e.items.empty()) nfa_[static_cast<size_t>(from)].eps.push_back(to);
        return {};
      }
      case GbnfExpr::Kind::kAlternatives:
        for (const GbnfExpr& item : e.items) EMBER_TRY_STATUS(thompson(item, from, to));
        return {};
      case GbnfExpr::Kind::kLiteral: {
        int at = from;
        for (size_t i = 0; i < e.literal.size(); ++i) {
          const int next = i + 1 == e.literal.size() ? to : new_node();
          const auto b = static_cast<uint8_t>(e.literal[i]);
          nfa_[static_cast<size_t>(at)].bytes.push_back({b, b, static_cast<uint32_t>(next)});
          at = next;
        }
        if (e.literal.empty()) nfa_[static_cast<size_t>(from)].eps.push_back(to);
        return {};
      }
      case GbnfExpr::Kind::kClass:
        if (e.ranges.empty()) return {};  // matches nothing
        for (const auto& [lo, hi] : e.ranges) utf8_sequences(lo, hi, from, to);
        return {};
      case GbnfExpr::Kind::kRule: {
        auto it = ids_.find(e.rule);
        if (it == ids_.end())
          return Error{"line " + std::to_string(e.line) + ", column " + std::to_string(e.column) + ": rule '" +
                       e.rule + "' is not defined"};
        if (inlined_[it->second]) return thompson((*rules_)[it->second].body, from, to);
        nfa_[static_cast<size_t>(from)].calls.emplace_back(it->second, to);
        return {};
      }
      case GbnfExpr::Kind::kRepeat: {
        const GbnfExpr& item = e.items[0];
        int at = from;
        for (int64_t i = 0; i < e.min; ++i) {  // the required copies
          const int next = new_node();
          EMBER_TRY_STATUS(thompson(item, at, next));
          at = next;
        }
        if (e.max < 0) {  // then a loop
          const int body = new_node();
          nfa_[static_cast<size_t>(at)].eps.push_back(body);
          nfa_[static_cast<size_t>(at)].eps.push_back(to);
          const int back = new_node();
          EMBER_TRY_STATUS(thompson(item, body, back));
          nfa_[static_cast<size_t>(back)].eps.push_back(body);
          nfa_[static_cast<size_t>(back)].eps.push_back(to);
          return {};
        }
        for (int64_t i = e.min; i < e.max; ++i) {  // then optional copies, each may end the run
          nfa_[static_cast<size_t>(at)].eps.push_back(to);
          const int next = i + 1 == e.max ? to : new_node();
          EMBER_TRY_STATUS(thompson(item, at, next));
          at = next;
        }
        if (e.max == e.min) nfa_[static_cast<size_t>(at)].eps.push_back(to);
        return {};
      }
    }
    return {};
  }

  std::vector<int> closure(std::vector<int> set) const {
    std::vector<char> seen(nfa_.size(), 0);
    for (int n : set) seen[static_cast<size_t>(n)] = 1;
    for (size_t i = 0; i < set.size(); ++i)
      for (int m : nfa_[static_cast<size_t>(set[i])].eps)
        if (!seen[static_cast<size_t>(m)]) seen[static_cast<size_t>(m)] = 1, set.push_back(m);
    std::sort(set.begin(), set.end());
    return set;
  }

  Status determinize(uint32_t rule, int start, Grammar& g) {
    std::map<std::vector<int>, uint32_t> ids;
    std::vector<std::vector<int>> work;
    auto state_of = [&](std::vector<int> set) -> Result<uint32_t> {
      set = closure(std::move(set));
      auto it = ids.find(set);
      if (it != ids.end()) return it->second;
      if (static_cast<int64_t>(g.states_.size()) >= limits_.max_states)
        return Error{"the grammar is too large (more than " + std::to_string(limits_.max_states) + " automaton states)"};
      const auto id = static_cast<uint32_t>(g.states_.size());
      Grammar::State st;
      st.rule = rule;
      st.final = std::binary_search(set.begin(), set.end(), nfa_accept_);
      g.states_.push_back(std::move(st));
      ids.emplace(set, id);
      work.push_back(std::move(set));
      return id;
    };
    auto first = state_of({start});
    if (!first.ok()) return first.error();
    g.rule_starts_[rule] = *first;
    while (!work.empty()) {
      const std::vector<int> set = std::move(work.back());
      work.pop_back();
      const uint32_t id = ids.at(set);
      // Byte edges: split the byte line at every range boundary, one target set per piece.
      std::vector<int> cuts;
      std::map<uint32_t, std::vector<int>> calls;
      for (int n : set) {
        for (const auto& e : nfa_[static_cast<size_t>(n)].bytes) cuts.push_back(e.lo), cuts.push_back(e.hi + 1);
        for (const auto& [r, to] : nfa_[static_cast<size_t>(n)].calls) calls[r].push_back(to);
      }
      std::sort(cuts.begin(), cuts.end());
      cuts.erase(std::unique(cuts.begin(), cuts.end()), cuts.end());
      std::vector<Grammar::ByteEdge> edges;
      for (size_t c = 0; c + 1 < cuts.size(); ++c) {
        const int lo = cuts[c], hi = cuts[c + 1] - 1;
        std::vector<int> targets;
        for (int n : set)
          for (const auto& e : nfa_[static_cast<size_t>(n)].bytes)
            if (e.lo <= lo && hi <= e.hi) targets.push_back(static_cast<int>(e.to));
        if (targets.empty()) continue;
        auto to = state_of(std::move(targets));
        if (!to.ok()) return to.error();
        if (!edges.empty() && edges.back().to == *to && edges.back().hi + 1 == lo)
          edges.back().hi = static_cast<uint8_t>(hi);
        else
          edges.push_back({static_cast<uint8_t>(lo), static_cast<uint8_t>(hi), *to});
      }
      std::vector<Grammar::CallEdge> call_edges;
      for (auto& [r, targets] : calls) {
        auto to = state_of(std::move(targets));
        if (!to.ok()) return to.error();
        call_edges.push_back({r, *to});
      }
      g.states_[id].bytes = std::move(edges);
      g.states_[id].calls = std::move(call_edges);
    }
    return {};
  }

  // A rule that can reach a call of itself without consuming a byte would expand forever.
  Status check_left_recursion(const Grammar& g) const {
    const size_t n = g.num_rules();
    std::vector<char> nullable(n, 0);
    // States of a rule reachable from its start without consuming, given the nullable rules so far.
    auto reach = [&](uint32_t r, std::vector<uint32_t>* called) {
      std::vector<uint32_t> stack{g.rule_starts_[r]}, seen{g.rule_starts_[r]};
      bool ends = false;
      while (!stack.empty()) {
        const Grammar::State& st = g.states_[stack.back()];
        stack.pop_back();
        ends = ends || st.final;
        for (const auto& c : st.calls) {
          if (called) called->push_back(c.rule);
          if (nullable[c.rule] && std::find(seen.begin(), seen.end(), c.ret) == seen.end())
            seen.push_back(c.ret), stack.push_back(c.ret);
        }
      }
      return ends;
    };
    for (bool changed = true; changed;) {
      changed = false;
      for (uint32_t r = 0; r < n; ++r)
        if (!nullable[r] && reach(r, nullptr)) nullable[r] = 1, changed = true;
    }
    std::vector<std::vector<uint32_t>> left(n);
    for (uint32_t r = 0; r < n; ++r) reach(r, &left[r]);
    std::vector<int> color(n, 0);  // 0 new, 1 on the path, 2 done
    std::vector<uint32_t> path;
    std::string cycle;
    auto dfs = [&](auto&& self, uint32_t r) -> bool {
      color[r] = 1;
      path.push_back(r);
      for (uint32_t s : left[r]) {
        if (color[s] == 1) {
          for (auto it = std::find(path.begin(), path.end(), s); it != path.end(); ++it) cycle += g.rule_names_[*it] + " -> ";
          cycle += g.rule_names_[s];
          return true;
        }
        if (color[s] == 0 && self(self, s)) return true;
      }
      path.pop_back();
      color[r] = 2;
      return false;
    };
    for (uint32_t r = 0; r < n; ++r)
      if (color[r] == 0 && dfs(dfs, r)) return Error{"left recursion in the grammar: " + cycle};
    return {};
  }

  GrammarLimits limits_;
  std::unordered_map<std::string, uint32_t> ids_;
  const std::vector<GbnfRule>* rules_ = nullptr;
  std::vector<char> inlined_;
  std::vector<int64_t> weights_;
  std::vector<NfaNode> nfa_;
  int nfa_accept_ = 0;
  int64_t total_nodes_ = 0;
};

Result<std::shared_ptr<const Grammar>> Grammar::parse(std::string_view gbnf, const GrammarLimits& limits) {
  if (gbnf.size() > limits.max_text_bytes)
    return Error{"the grammar text is longer than " + std::to_string(limits.max_text_bytes) + " bytes"};
  auto rules = parse_gbnf_rules(gbnf);
  if (!rules.ok()) return rules.error();
  return GrammarBuilder(limits).build(*rules);
}

int64_t Grammar::next(uint32_t state, uint8_t byte) const {
  const auto& edges = states_[state].bytes;
  auto it = std::upper_bound(edges.begin(), edges.end(), byte, [](uint8_t b, const ByteEdge& e) { return b < e.lo; });
  if (it == edges.begin()) return -1;
  --it;
  return byte <= it->hi ? static_cast<int64_t>(it->to) : -1;
}

bool Grammar::matches(std::string_view text) const {
  // Stacks of states, all alternatives at once (tests and tools only: no sharing, no speed).
  using Stack = std::vector<uint32_t>;
  auto expand = [&](const std::vector<Stack>& heads, std::vector<Stack>& frontier, bool& can_end) {
    std::vector<Stack> work = heads, seen;
    frontier.clear();
    can_end = false;
    while (!work.empty()) {
      Stack s = std::move(work.back());
      work.pop_back();
      if (std::find(seen.begin(), seen.end(), s) != seen.end() || seen.size() > 100000) continue;
      seen.push_back(s);
      const State& st = states_[s.back()];
      if (!st.bytes.empty()) frontier.push_back(s);
      for (const CallEdge& c : st.calls) {
        Stack t = s;
        t.back() = c.ret;
        t.push_back(rule_starts_[c.rule]);
        work.push_back(std::move(t));
      }
      if (st.final) {
        if (s.size() == 1) {
          can_end = true;
        } else {
          s.pop_back();
          work.push_back(std::move(s));
        }
      }
    }
  };
  std::vector<Stack> heads{{rule_starts_[root_]}}, frontier;
  bool can_end = false;
  for (char ch : text) {
    expand(heads, frontier, can_end);
    heads.clear();
    for (const Stack& s : frontier) {
      const int64_t to = next(s.back(), static_cast<uint8_t>(ch));
      if (to < 0) continue;
      Stack t = s;
      t.back() = static_cast<uint32_t>(to);
      if (std::find(heads.begin(), heads.end(), t) == heads.end()) heads.push_back(std::move(t));
    }
    if (heads.empty()) return false;
  }
  expand(heads, frontier, can_end);
  return can_end;
}

std::string gbnf_literal(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out = "\"";
  for (char ch : text) {
    const auto b = static_cast<unsigned char>(ch);
    if (ch == '"' || ch == '\\') {
      out += '\\', out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else if (ch == '\r') {
      out += "\\r";
    } else if (ch == '\t') {
      out += "\\t";
    } else if (b < 0x20 || b == 0x7F) {
      out += "\\x", out += kHex[b >> 4], out += kHex[b & 15];
    } else {
      out += ch;  // UTF-8 passes through (the parser decodes it)
    }
  }
  return out + "\"";
}

}  // namespace ember::structured
