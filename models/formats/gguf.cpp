// GGUF parser. The format (little-endian):
//   magic "GGUF" u32 | version u32 | tensor_count u64 | kv_count u64
//   kv_count x { key: string, type: u32, value }
//   tensor_count x { name: string, n_dims: u32, dims: u64[n_dims], type: u32, offset: u64 }
//   padding to general.alignment | tensor data (offsets are relative to here)
// where string = { len: u64, bytes[len] } and array = { elem_type: u32, count: u64, elems }.
// Every read goes through Cursor, which refuses to step past the end; every
// count is bounded by the bytes left (each element costs at least one byte)
// before anything is allocated, so a hostile header cannot ask for gigabytes.

#include "models/formats/gguf.h"

#include <bit>
#include <cstdint>
#include <cstring>
#include <set>
#include <type_traits>
#include <utility>

namespace ember {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF is read without byte swapping");

constexpr uint32_t kMagic = 0x46554747;  // "GGUF" read as a little-endian u32
constexpr uint32_t kMaxDims = 4;         // GGML_MAX_DIMS
constexpr int kMaxArrayDepth = 8;        // arrays of arrays: bounded so recursion cannot blow the stack
constexpr uint64_t kDefaultAlignment = 32;

class Cursor {
 public:
  Cursor(const uint8_t* data, size_t size, const std::string& name) : data_(data), size_(size), name_(name) {}

  size_t pos() const { return pos_; }
  size_t remaining() const { return size_ - pos_; }

  // Decoded metadata can be far larger than its encoding (a uint8 array
  // becomes int64s, a 12-byte empty array a whole GgufValue), so memory is
  // budgeted separately from the file size. Real files need a few tens of MB.
  static constexpr uint64_t kMetadataBudget = uint64_t{256} << 20;
  Status charge(uint64_t at, uint64_t count, uint64_t bytes_each) {
    if (bytes_each != 0 && count > (kMetadataBudget - decoded_) / bytes_each) {
      return error_at(at, "metadata would need more than " + std::to_string(kMetadataBudget >> 20) +
                              " MiB of memory once decoded");
    }
    decoded_ += count * bytes_each;
    return {};
  }

  Error error_at(uint64_t offset, const std::string& problem) const {
    return Error{name_ + ": offset " + std::to_string(offset) + ": " + problem};
  }

  template <class T>
  Status read(T* out, const char* what) {
    if (remaining() < sizeof(T)) {
      return error_at(pos_, std::string("file truncated reading ") + what + " (" + std::to_string(sizeof(T)) +
                                " bytes needed, " + std::to_string(remaining()) + " left)");
    }
    std::memcpy(out, data_ + pos_, sizeof(T));
    pos_ += sizeof(T);
    return {};
  }

  Status read_string(std::string* out, const char* what) {
    const size_t at = pos_;
    uint64_t len = 0;
    if (Status s = read(&len, what); !s) return s;
    if (len > remaining()) {
      return error_at(at, std::string(what) + " length " + std::to_string(len) + " exceeds the " +
                              std::to_string(remaining()) + " bytes left in the file");
    }
    if (Status s = charge(at, len, 1); !s) return s;
    out->assign(reinterpret_cast<const char*>(data_ + pos_), static_cast<size_t>(len));
    pos_ += static_cast<size_t>(len);
    return {};
  }

 private:
  const uint8_t* data_;
  size_t size_;
  size_t pos_ = 0;
  uint64_t decoded_ = 0;
  const std::string& name_;
};

// Smallest encoding of one value of `type`; 0 for an unknown type tag.
size_t min_encoded_size(uint32_t type) {
  switch (static_cast<GgufValueType>(type)) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kBool: return 1;
    case GgufValueType::kUint16: case GgufValueType::kInt16: return 2;
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kFloat32: return 4;
    case GgufValueType::kUint64: case GgufValueType::kInt64: case GgufValueType::kFloat64: return 8;
    case GgufValueType::kString: return 8;   // the length prefix
    case GgufValueType::kArray: return 12;   // element type + count
  }
  return 0;
}

bool is_integer(GgufValueType t) {
  switch (t) {
    case GgufValueType::kUint8: case GgufValueType::kInt8: case GgufValueType::kUint16: case GgufValueType::kInt16:
    case GgufValueType::kUint32: case GgufValueType::kInt32: case GgufValueType::kUint64: case GgufValueType::kInt64:
      return true;
    default:
      return false;
  }
}

template <class T>
Status read_int(Cursor& in, int64_t* out, bool allow_huge_u64, uint64_t* out_u64 = nullptr) {
  const size_t at = in.pos();
  T v{};
  if (Status s = in.read(&v, "an integer value"); !s) return s;
  if constexpr (std::is_same_v<T, uint64_t>) {
    if (out_u64) *out_u64 = v;
    if (v > static_cast<uint64_t>(INT64_MAX) && !allow_huge_u64) {
      return in.error_at(at, "uint64 array element " + std::to_string(v) + " does not fit in int64");
    }
  }
  *out = static_cast<int64_t>(v);
  return {};
}

// Reads one integer of `type` (which must be an integer type).
Status read_integer(Cursor& in, GgufValueType type, int64_t* out, bool allow_huge_u64, uint64_t* out_u64) {
  switch (type) {
    case GgufValueType::kUint8: return read_int<uint8_t>(in, out, false);
    case GgufValueType::kInt8: return read_int<int8_t>(in, out, false);
    case GgufValueType::kUint16: return read_int<uint16_t>(in, out, false);
    case GgufValueType::kInt16: return read_int<int16_t>(in, out, false);
    case GgufValueType::kUint32: return read_int<uint32_t>(in, out, false);
    case GgufValueType::kInt32: return read_int<int32_t>(in, out, false);
    case GgufValueType::kUint64: return read_int<uint64_t>(in, out, allow_huge_u64, out_u64);
    default: return read_int<int64_t>(in, out, false);
  }
}

Status read_float(Cursor& in, GgufValueType type, double* out) {
  if (type == GgufValueType::kFloat32) {
    float f = 0;
    if (Status s = in.read(&f, "a float32 value"); !s) return s;
    *out = f;
    return {};
  }
  return in.read(out, "a float64 value");
}

Status read_bool(Cursor& in, bool* out) {
  const size_t at = in.pos();
  uint8_t b = 0;
  if (Status s = in.read(&b, "a bool value"); !s) return s;
  if (b > 1) return in.error_at(at, "bool value " + std::to_string(b) + " is neither 0 nor 1");
  *out = b != 0;
  return {};
}

Status read_value(Cursor& in, GgufValueType type, GgufValue* v, int depth);

Status read_array(Cursor& in, GgufValue* v, int depth) {
  const size_t at = in.pos();
  if (depth >= kMaxArrayDepth) {
    return in.error_at(at, "arrays nested more than " + std::to_string(kMaxArrayDepth) + " deep");
  }
  uint32_t elem_type = 0;
  uint64_t count = 0;
  if (Status s = in.read(&elem_type, "an array element type"); !s) return s;
  const size_t elem_size = min_encoded_size(elem_type);
  if (elem_size == 0) return in.error_at(at, "unknown array element type " + std::to_string(elem_type));
  if (Status s = in.read(&count, "an array length"); !s) return s;
  if (count > in.remaining() / elem_size) {
    return in.error_at(at + 4, "array of " + std::to_string(count) + " elements cannot fit in the " +
                                   std::to_string(in.remaining()) + " bytes left in the file");
  }
  const auto type = static_cast<GgufValueType>(elem_type);
  v->array_type = type;
  const auto n = static_cast<size_t>(count);  // bounded by the file size above
  const uint64_t each = is_integer(type) || type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64 ? 8
                        : type == GgufValueType::kBool                                                        ? 1
                        : type == GgufValueType::kString ? sizeof(std::string)
                                                         : sizeof(GgufValue);
  if (Status s = in.charge(at, count, each); !s) return s;
  if (is_integer(type)) {
    v->ints.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (Status s = read_integer(in, type, &v->ints[i], false, nullptr); !s) return s;
    }
  } else if (type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64) {
    v->floats.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (Status s = read_float(in, type, &v->floats[i]); !s) return s;
    }
  } else if (type == GgufValueType::kBool) {
    v->bools.resize(n);
    for (size_t i = 0; i < n; ++i) {
      bool b = false;
      if (Status s = read_bool(in, &b); !s) return s;
      v->bools[i] = b ? 1 : 0;
    }
  } else if (type == GgufValueType::kString) {
    v->strings.resize(n);
    for (size_t i = 0; i < n; ++i) {
      if (Status s = in.read_string(&v->strings[i], "an array string"); !s) return s;
    }
  } else {
    // No resize here: a GgufValue is far larger than its 12-byte encoding, so
    // the vector grows only as elements are actually read.
    for (size_t i = 0; i < n; ++i) {
      GgufValue inner;
      if (Status s = read_value(in, type, &inner, depth + 1); !s) return s;
      v->arrays.push_back(std::move(inner));
    }
  }
  return {};
}

Status read_value(Cursor& in, GgufValueType type, GgufValue* v, int depth) {
  v->type = type;
  if (type == GgufValueType::kArray) return read_array(in, v, depth);
  if (type == GgufValueType::kString) {
    std::string s;
    if (Status st = in.read_string(&s, "a string value"); !st) return st;
    v->scalar = std::move(s);
  } else if (type == GgufValueType::kBool) {
    bool b = false;
    if (Status s = read_bool(in, &b); !s) return s;
    v->scalar = b;
  } else if (type == GgufValueType::kFloat32 || type == GgufValueType::kFloat64) {
    double d = 0;
    if (Status s = read_float(in, type, &d); !s) return s;
    v->scalar = d;
  } else {
    int64_t i = 0;
    uint64_t u = 0;
    if (Status s = read_integer(in, type, &i, true, &u); !s) return s;
    const bool is_unsigned = type == GgufValueType::kUint8 || type == GgufValueType::kUint16 ||
                             type == GgufValueType::kUint32 || type == GgufValueType::kUint64;
    if (type == GgufValueType::kUint64) {
      v->scalar = u;
    } else if (is_unsigned) {
      v->scalar = static_cast<uint64_t>(i);
    } else {
      v->scalar = i;
    }
  }
  return {};
}

Status read_header(Cursor& in, uint32_t* version, uint64_t* tensor_count, uint64_t* kv_count) {
  uint32_t magic = 0;
  if (Status s = in.read(&magic, "the magic"); !s) return s;
  if (magic != kMagic) return in.error_at(0, "not a GGUF file (bad magic)");
  if (Status s = in.read(version, "the version"); !s) return s;
  if (*version == 1) {
    return in.error_at(4, "GGUF version 1 is not supported (it uses 32-bit counts); convert the file to v3");
  }
  if (*version != 2 && *version != 3) {
    return in.error_at(4, "unsupported GGUF version " + std::to_string(*version) +
                              (*version > 0xFFFF ? " (a big-endian file?)" : ""));
  }
  if (Status s = in.read(tensor_count, "the tensor count"); !s) return s;
  if (Status s = in.read(kv_count, "the metadata count"); !s) return s;
  return {};
}

// Reads one tensor info; shape and type are validated here, the offset once the data section is known.
Status read_tensor_info(Cursor& in, GgufTensor* t) {
  const size_t at = in.pos();
  if (Status s = in.read_string(&t->name, "a tensor name"); !s) return s;
  const std::string who = "tensor '" + t->name + "': ";
  uint32_t n_dims = 0;
  const size_t dims_at = in.pos();
  if (Status s = in.read(&n_dims, "a tensor dimension count"); !s) return s;
  if (n_dims > kMaxDims) {
    return in.error_at(dims_at, who + std::to_string(n_dims) + " dimensions (at most 4 are allowed)");
  }
  uint64_t elems = 1;
  t->shape.resize(n_dims);
  for (uint32_t d = 0; d < n_dims; ++d) {
    const size_t dim_at = in.pos();
    uint64_t dim = 0;
    if (Status s = in.read(&dim, "a tensor dimension"); !s) return s;
    if (dim > static_cast<uint64_t>(INT64_MAX) || (dim != 0 && elems > static_cast<uint64_t>(INT64_MAX) / dim)) {
      return in.error_at(dim_at, who + "element count overflows (dimension " + std::to_string(dim) + ")");
    }
    elems *= dim;
    t->shape[d] = static_cast<int64_t>(dim);
  }
  const size_t type_at = in.pos();
  uint32_t type = 0;
  if (Status s = in.read(&type, "a tensor type"); !s) return s;
  t->type = static_cast<GgmlType>(type);
  int64_t block_elems = 0, block_bytes = 0;
  if (!ggml_type_layout(t->type, &block_elems, &block_bytes)) {
    return in.error_at(type_at, who + "ggml type " + std::to_string(type) + " is not supported");
  }
  const int64_t row = n_dims > 0 ? t->shape[0] : 1;
  if (row % block_elems != 0) {
    return in.error_at(type_at, who + "first dimension " + std::to_string(row) + " is not a multiple of the " +
                                    ggml_type_name(t->type) + " block size " + std::to_string(block_elems));
  }
  const uint64_t blocks = elems / static_cast<uint64_t>(block_elems);
  if (blocks > UINT64_MAX / static_cast<uint64_t>(block_bytes)) {
    return in.error_at(at, who + "byte size overflows");
  }
  t->nbytes = blocks * static_cast<uint64_t>(block_bytes);
  return in.read(&t->offset, "a tensor offset");  // relative to the data section for now
}

}  // namespace

int64_t GgufTensor::num_elements() const {
  int64_t n = 1;
  for (int64_t d : shape) n *= d;  // checked against overflow when parsed
  return n;
}

Result<GgufFile> GgufFile::open(const std::string& path) {
  Result<MappedFile> mapped = MappedFile::open(path);
  if (!mapped) return mapped.error();
  Result<GgufFile> parsed = parse(mapped->data(), mapped->size(), path);
  if (!parsed) return parsed.error();
  // The mapping's address survives the move, so tensor pointers stay valid.
  parsed->file_ = std::move(*mapped);
  return parsed;
}

Result<GgufFile> GgufFile::parse(const uint8_t* data, size_t size, const std::string& name) {
  GgufFile f;
  f.name_ = name;
  Cursor in(data, size, f.name_);
  uint64_t tensor_count = 0, kv_count = 0;
  if (Status s = read_header(in, &f.version_, &tensor_count, &kv_count); !s) return s.error();
  // Smallest kv: empty key (8) + type (4) + a u8 (1); smallest tensor info: empty name (8) + n_dims (4) + type (4) + offset (8).
  if (kv_count > in.remaining() / 13) {
    return in.error_at(16, "metadata count " + std::to_string(kv_count) + " cannot fit in the file");
  }
  if (tensor_count > in.remaining() / 24) {
    return in.error_at(8, "tensor count " + std::to_string(tensor_count) + " cannot fit in the file");
  }

  size_t alignment_at = 0;
  for (uint64_t i = 0; i < kv_count; ++i) {
    const size_t key_at = in.pos();
    std::string key;
    if (Status s = in.read_string(&key, "a metadata key"); !s) return s.error();
    const size_t type_at = in.pos();
    uint32_t type = 0;
    if (Status s = in.read(&type, "a metadata value type"); !s) return s.error();
    if (min_encoded_size(type) == 0) {
      return in.error_at(type_at, "metadata '" + key + "': unknown value type " + std::to_string(type));
    }
    GgufValue value;
    if (Status s = read_value(in, static_cast<GgufValueType>(type), &value, 0); !s) return s.error();
    if (key == "general.alignment") alignment_at = type_at;
    if (!f.metadata_.emplace(key, std::move(value)).second) {
      return in.error_at(key_at, "duplicate metadata key '" + key + "'");
    }
  }

  if (const GgufValue* a = f.find("general.alignment")) {
    const auto* u = std::get_if<uint64_t>(&a->scalar);
    if (!is_integer(a->type) || u == nullptr) {
      return in.error_at(alignment_at, "general.alignment must be an unsigned integer");
    }
    if (*u == 0 || (*u & (*u - 1)) != 0 || *u > (uint64_t{1} << 32)) {
      return in.error_at(alignment_at, "general.alignment " + std::to_string(*u) +
                                             " is not a nonzero power of two <= 2^32");
    }
    f.alignment_ = *u;
  } else {
    f.alignment_ = kDefaultAlignment;
  }

  std::set<std::string, std::less<>> names;
  std::vector<size_t> info_offsets;
  for (uint64_t i = 0; i < tensor_count; ++i) {
    info_offsets.push_back(in.pos());
    GgufTensor t;
    if (Status s = read_tensor_info(in, &t); !s) return s.error();
    if (!names.insert(t.name).second) {
      return in.error_at(info_offsets.back(), "duplicate tensor name '" + t.name + "'");
    }
    f.tensors_.push_back(std::move(t));
  }

  // The data section starts at the next multiple of the alignment (alignment <= 2^32, pos < 2^63: no overflow).
  f.data_offset_ = (in.pos() + f.alignment_ - 1) / f.alignment_ * f.alignment_;
  for (size_t i = 0; i < f.tensors_.size(); ++i) {
    GgufTensor& t = f.tensors_[i];
    const std::string who = "tensor '" + t.name + "': ";
    const uint64_t rel = t.offset;
    if (rel % f.alignment_ != 0) {
      return in.error_at(info_offsets[i], who + "data offset " + std::to_string(rel) + " is not a multiple of the alignment " +
                                              std::to_string(f.alignment_));
    }
    if (rel > size || f.data_offset_ > size - rel || t.nbytes > size - rel - f.data_offset_) {
      return in.error_at(info_offsets[i], who + std::to_string(t.nbytes) + " bytes at data offset " + std::to_string(rel) +
                                              " run past the end of the " + std::to_string(size) + "-byte file");
    }
    t.offset = f.data_offset_ + rel;
    t.data = data + t.offset;
  }
  return f;
}

const GgufValue* GgufFile::find(std::string_view key) const {
  auto it = metadata_.find(std::string(key));
  return it == metadata_.end() ? nullptr : &it->second;
}

std::optional<int64_t> GgufFile::get_int(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || !is_integer(v->type)) return std::nullopt;
  if (const auto* i = std::get_if<int64_t>(&v->scalar)) return *i;
  const uint64_t u = std::get<uint64_t>(v->scalar);
  if (u > static_cast<uint64_t>(INT64_MAX)) return std::nullopt;
  return static_cast<int64_t>(u);
}

std::optional<double> GgufFile::get_float(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr) return std::nullopt;
  if (const auto* d = std::get_if<double>(&v->scalar); d && v->type != GgufValueType::kArray) return *d;
  if (is_integer(v->type)) {
    if (const auto* i = std::get_if<int64_t>(&v->scalar)) return static_cast<double>(*i);
    return static_cast<double>(std::get<uint64_t>(v->scalar));
  }
  return std::nullopt;
}

std::optional<std::string> GgufFile::get_string(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type != GgufValueType::kString) return std::nullopt;
  return std::get<std::string>(v->scalar);
}

std::optional<bool> GgufFile::get_bool(std::string_view key) const {
  const GgufValue* v = find(key);
  if (v == nullptr || v->type != GgufValueType::kBool) return std::nullopt;
  return std::get<bool>(v->scalar);
}

const GgufTensor* GgufFile::find_tensor(std::string_view name) const {
  for (const GgufTensor& t : tensors_) {
    if (t.name == name) return &t;
  }
  return nullptr;
}

}  // namespace ember
