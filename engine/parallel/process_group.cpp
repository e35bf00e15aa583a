#include "engine/parallel/process_group.h"

#include <cstdlib>
#include <cstring>

#include <spdlog/spdlog.h>

namespace ember {
namespace {

constexpr int kHeader = 7;

template <class T>
void append(std::string& out, const std::vector<T>& v) {
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

template <class T>
bool take(std::string_view& in, std::vector<T>& v, int64_t count) {
  if (count < 0 || static_cast<uint64_t>(count) > in.size() / sizeof(T)) return false;
  v.resize(static_cast<size_t>(count));
  std::memcpy(v.data(), in.data(), v.size() * sizeof(T));
  in.remove_prefix(v.size() * sizeof(T));
  return true;
}

}  // namespace

std::string pack_step(const ForwardInputs& in) {
  const int64_t header[kHeader] = {static_cast<int64_t>(in.token_ids.size()),
                                   static_cast<int64_t>(in.positions.size()),
                                   static_cast<int64_t>(in.slot_mapping.size()),
                                   static_cast<int64_t>(in.query_start_loc.size()),
                                   static_cast<int64_t>(in.seq_lens.size()),
                                   static_cast<int64_t>(in.block_tables.size()),
                                   static_cast<int64_t>(in.logits_indices.size())};
  std::string out(reinterpret_cast<const char*>(header), sizeof header);
  const int64_t stride = in.max_blocks_per_seq;
  out.append(reinterpret_cast<const char*>(&stride), sizeof stride);
  append(out, in.token_ids);
  append(out, in.positions);
  append(out, in.slot_mapping);
  append(out, in.query_start_loc);
  append(out, in.seq_lens);
  append(out, in.block_tables);
  append(out, in.logits_indices);
  return out;
}

bool unpack_step(std::string_view bytes, ForwardInputs& in) {
  int64_t header[kHeader + 1];
  if (bytes.size() < sizeof header) return false;
  std::memcpy(header, bytes.data(), sizeof header);
  bytes.remove_prefix(sizeof header);
  if (header[kHeader] < 0 || header[kHeader] > INT32_MAX) return false;
  in.max_blocks_per_seq = static_cast<int32_t>(header[kHeader]);
  return take(bytes, in.token_ids, header[0]) && take(bytes, in.positions, header[1]) &&
         take(bytes, in.slot_mapping, header[2]) && take(bytes, in.query_start_loc, header[3]) &&
         take(bytes, in.seq_lens, header[4]) && take(bytes, in.block_tables, header[5]) &&
         take(bytes, in.logits_indices, header[6]) && bytes.empty();
}

void serve_rank_steps(ProcessGroup& group, const std::function<void(const ForwardInputs&)>& forward) {
  ForwardInputs in;
  while (group.receive_step(in)) forward(in);
}

void process_group_failure(const std::string& what) {
  spdlog::critical("tensor parallelism: {}; ending this rank (status 1) rather than hanging", what);
  spdlog::default_logger()->flush();
  std::_Exit(1);
}

}  // namespace ember
