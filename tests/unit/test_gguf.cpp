// GgufFile parsing on hand-built byte buffers: valid v2/v3 files, every
// metadata type, and corruptions that must come back as an Error naming the
// offset (never a crash or a huge allocation). Dequantization against gguf-py
// goldens is in test_gguf_dequant.cpp.

#include <gtest/gtest.h>

#include <cstring>
#include <optional>
#include <string>
#include <vector>

#include "models/formats/gguf.h"

namespace ember {
namespace {

// Little-endian GGUF writer for tests.
class Builder {
 public:
  Builder& u8(uint8_t v) { return raw(&v, 1); }
  Builder& u16(uint16_t v) { return raw(&v, 2); }
  Builder& u32(uint32_t v) { return raw(&v, 4); }
  Builder& u64(uint64_t v) { return raw(&v, 8); }
  Builder& f32(float v) { return raw(&v, 4); }
  Builder& f64(double v) { return raw(&v, 8); }
  Builder& str(const std::string& s) { return u64(s.size()).raw(s.data(), s.size()); }
  Builder& header(uint32_t version, uint64_t tensors, uint64_t kvs) {
    return raw("GGUF", 4).u32(version).u64(tensors).u64(kvs);
  }
  Builder& kv(const std::string& key, GgufValueType type) { return str(key).u32(static_cast<uint32_t>(type)); }
  Builder& tensor(const std::string& name, std::vector<uint64_t> dims, GgmlType type, uint64_t offset) {
    str(name).u32(static_cast<uint32_t>(dims.size()));
    for (uint64_t d : dims) u64(d);
    return u32(static_cast<uint32_t>(type)).u64(offset);
  }
  Builder& pad_to(size_t alignment) {
    while (bytes.size() % alignment != 0) bytes.push_back(0);
    return *this;
  }
  Builder& raw(const void* p, size_t n) {
    const auto* b = static_cast<const uint8_t*>(p);
    bytes.insert(bytes.end(), b, b + n);
    return *this;
  }
  std::vector<uint8_t> bytes;
};

Result<GgufFile> parse(const std::vector<uint8_t>& b) { return GgufFile::parse(b.data(), b.size(), "t.gguf"); }

// The error message, or "" if parsing succeeded (so EXPECT_* print it on failure).
std::string parse_error(const std::vector<uint8_t>& b) {
  Result<GgufFile> f = parse(b);
  return f.ok() ? "" : f.error().message;
}

// A small valid file: every metadata type, a nested array, two tensors.
std::vector<uint8_t> valid_file(uint32_t version) {
  Builder b;
  b.header(version, 2, 16);
  b.kv("general.architecture", GgufValueType::kString).str("llama");
  b.kv("k.u8", GgufValueType::kUint8).u8(250);
  b.kv("k.i8", GgufValueType::kInt8).u8(0x80);  // -128
  b.kv("k.u16", GgufValueType::kUint16).u16(65535);
  b.kv("k.i16", GgufValueType::kInt16).u16(0xFFFE);  // -2
  b.kv("k.u32", GgufValueType::kUint32).u32(4000000000u);
  b.kv("k.i32", GgufValueType::kInt32).u32(0xFFFFFFFFu);  // -1
  b.kv("k.f32", GgufValueType::kFloat32).f32(1.5f);
  b.kv("k.bool", GgufValueType::kBool).u8(1);
  b.kv("k.u64", GgufValueType::kUint64).u64(UINT64_MAX);
  b.kv("k.i64", GgufValueType::kInt64).u64(static_cast<uint64_t>(INT64_MIN));
  b.kv("k.f64", GgufValueType::kFloat64).f64(-0.25);
  b.kv("k.arr_str", GgufValueType::kArray).u32(8).u64(2).str("x").str("");
  b.kv("k.arr_f32", GgufValueType::kArray).u32(6).u64(2).f32(2.0f).f32(-3.0f);
  b.kv("k.arr_bool", GgufValueType::kArray).u32(7).u64(3).u8(0).u8(1).u8(1);
  // [[7, 8], []] as int16
  b.kv("k.nested", GgufValueType::kArray).u32(9).u64(2).u32(3).u64(2).u16(7).u16(8).u32(3).u64(0);
  b.tensor("norm", {4}, GgmlType::kF32, 0);
  b.tensor("embd", {32, 2}, GgmlType::kQ8_0, 32);
  b.pad_to(32);
  for (float v : {1.0f, -2.0f, 0.5f, 4.0f}) b.f32(v);
  b.pad_to(32);
  for (int blk = 0; blk < 2; ++blk) {
    b.u16(0x3800);  // d = 0.5
    for (int j = 0; j < 32; ++j) b.u8(static_cast<uint8_t>(j - 16 + blk));
  }
  return b.bytes;
}

void expect_valid_contents(const GgufFile& f) {
  EXPECT_EQ(f.get_string("general.architecture"), "llama");
  EXPECT_EQ(f.get_int("k.u8"), 250);
  EXPECT_EQ(f.get_int("k.i8"), -128);
  EXPECT_EQ(f.get_int("k.u16"), 65535);
  EXPECT_EQ(f.get_int("k.i16"), -2);
  EXPECT_EQ(f.get_int("k.u32"), 4000000000LL);
  EXPECT_EQ(f.get_int("k.i32"), -1);
  EXPECT_EQ(f.get_float("k.f32"), 1.5);
  EXPECT_EQ(f.get_bool("k.bool"), true);
  EXPECT_EQ(f.get_int("k.u64"), std::nullopt);  // does not fit int64
  EXPECT_EQ(std::get<uint64_t>(f.find("k.u64")->scalar), UINT64_MAX);
  EXPECT_EQ(f.get_int("k.i64"), INT64_MIN);
  EXPECT_EQ(f.get_float("k.f64"), -0.25);
  EXPECT_EQ(f.get_float("k.u32"), 4e9);  // integers widen to float
  EXPECT_EQ(f.get_int("k.f32"), std::nullopt);
  EXPECT_EQ(f.get_string("k.u8"), std::nullopt);
  EXPECT_EQ(f.find("missing"), nullptr);
  EXPECT_EQ(f.find("k.u8")->type, GgufValueType::kUint8);
  EXPECT_EQ(f.find("k.i16")->type, GgufValueType::kInt16);

  const GgufValue* s = f.find("k.arr_str");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ(s->type, GgufValueType::kArray);
  EXPECT_EQ(s->array_type, GgufValueType::kString);
  EXPECT_EQ(s->strings, (std::vector<std::string>{"x", ""}));
  EXPECT_EQ(f.find("k.arr_f32")->floats, (std::vector<double>{2.0, -3.0}));
  EXPECT_EQ(f.find("k.arr_bool")->bools, (std::vector<uint8_t>{0, 1, 1}));
  const GgufValue* n = f.find("k.nested");
  ASSERT_EQ(n->arrays.size(), 2u);
  EXPECT_EQ(n->array_type, GgufValueType::kArray);
  EXPECT_EQ(n->arrays[0].array_type, GgufValueType::kInt16);
  EXPECT_EQ(n->arrays[0].ints, (std::vector<int64_t>{7, 8}));
  EXPECT_TRUE(n->arrays[1].ints.empty());

  ASSERT_EQ(f.tensors().size(), 2u);
  const GgufTensor* norm = f.find_tensor("norm");
  const GgufTensor* embd = f.find_tensor("embd");
  ASSERT_TRUE(norm && embd);
  EXPECT_EQ(f.alignment(), 32u);
  EXPECT_EQ(f.data_offset() % 32, 0u);
  EXPECT_EQ(norm->offset, f.data_offset());
  EXPECT_EQ(embd->offset, f.data_offset() + 32);
  EXPECT_EQ(norm->nbytes, 16u);
  EXPECT_EQ(embd->nbytes, 68u);
  EXPECT_EQ(embd->shape, (std::vector<int64_t>{32, 2}));
  EXPECT_EQ(embd->num_elements(), 64);
  EXPECT_EQ(embd->type, GgmlType::kQ8_0);

  std::vector<float> out(64);
  ASSERT_TRUE(dequantize(norm->type, norm->data, 4, out.data()));
  EXPECT_EQ(std::vector<float>(out.begin(), out.begin() + 4), (std::vector<float>{1.0f, -2.0f, 0.5f, 4.0f}));
  ASSERT_TRUE(dequantize(embd->type, embd->data, 64, out.data()));
  for (int blk = 0; blk < 2; ++blk) {
    for (int j = 0; j < 32; ++j) EXPECT_EQ(out[blk * 32 + j], 0.5f * static_cast<float>(j - 16 + blk));
  }
}

TEST(Gguf, ParsesV3) {
  std::vector<uint8_t> b = valid_file(3);
  Result<GgufFile> f = parse(b);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->version(), 3u);
  EXPECT_EQ(f->metadata().size(), 16u);
  expect_valid_contents(*f);
}

TEST(Gguf, ParsesV2) {
  std::vector<uint8_t> b = valid_file(2);
  Result<GgufFile> f = parse(b);
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->version(), 2u);
  expect_valid_contents(*f);
}

TEST(Gguf, RejectsOtherVersions) {
  std::vector<uint8_t> b = valid_file(1);
  EXPECT_EQ(parse_error(b), "t.gguf: offset 4: GGUF version 1 is not supported (it uses 32-bit counts); "
                            "convert the file to v3");
  EXPECT_NE(parse_error(valid_file(4)).find("offset 4: unsupported GGUF version 4"), std::string::npos);
  EXPECT_NE(parse_error(valid_file(0x03000000)).find("big-endian"), std::string::npos);
}

TEST(Gguf, RejectsBadMagic) {
  std::vector<uint8_t> b = valid_file(3);
  b[0] = 'X';
  EXPECT_EQ(parse_error(b), "t.gguf: offset 0: not a GGUF file (bad magic)");
  EXPECT_NE(parse_error({}).find("t.gguf: offset 0: file truncated"), std::string::npos);
}

// Every prefix of a valid file is an error with an offset, never a crash. Each
// prefix is its own heap block, so a read past its end is a real overread (ASan).
TEST(Gguf, TruncatedAtEveryOffset) {
  const std::vector<uint8_t> full = valid_file(3);
  ASSERT_TRUE(parse(full).ok());
  for (size_t n = 0; n < full.size(); ++n) {
    std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(n));
    std::string err = parse_error(cut);
    ASSERT_EQ(err.rfind("t.gguf: offset ", 0), 0u) << "prefix of " << n << " bytes: '" << err << "'";
  }
}

TEST(Gguf, RejectsHugeCounts) {
  EXPECT_NE(parse_error(Builder().header(3, 0, UINT64_MAX).bytes).find("offset 16: metadata count"), std::string::npos);
  EXPECT_NE(parse_error(Builder().header(3, UINT64_MAX / 2, 0).bytes).find("offset 8: tensor count"), std::string::npos);
  Builder arr;
  arr.header(3, 0, 1).kv("a", GgufValueType::kArray).u32(4).u64(uint64_t{1} << 61);
  EXPECT_NE(parse_error(arr.bytes).find("offset 41: array of 2305843009213693952 elements cannot fit"),
            std::string::npos);
  Builder nested;  // a billion empty-looking arrays in a tiny file
  nested.header(3, 0, 1).kv("a", GgufValueType::kArray).u32(9).u64(1000000000);
  EXPECT_NE(parse_error(nested.bytes).find("cannot fit"), std::string::npos);
}

TEST(Gguf, RejectsHugeStrings) {
  Builder key;
  key.header(3, 0, 1).u64(UINT64_MAX).raw("0123456789abcdef", 16);
  EXPECT_EQ(parse_error(key.bytes),
            "t.gguf: offset 24: a metadata key length 18446744073709551615 exceeds the 16 bytes left in the file");
  Builder value;
  value.header(3, 0, 1).kv("s", GgufValueType::kString).u64(uint64_t{1} << 40);
  EXPECT_NE(parse_error(value.bytes).find("offset 37: a string value length 1099511627776 exceeds"), std::string::npos);
  Builder name;
  name.header(3, 1, 0).u64(1000).u64(0).u64(0).u64(0);
  EXPECT_NE(parse_error(name.bytes).find("offset 24: a tensor name length 1000 exceeds"), std::string::npos);
}

TEST(Gguf, RejectsBadValues) {
  Builder type;
  type.header(3, 0, 1).kv("k", GgufValueType::kString).raw("", 0);
  type.bytes[24 + 9] = 13;  // the value type tag, little-endian low byte
  EXPECT_EQ(parse_error(type.bytes), "t.gguf: offset 33: metadata 'k': unknown value type 13");
  Builder boolean;
  boolean.header(3, 0, 1).kv("b", GgufValueType::kBool).u8(2);
  EXPECT_NE(parse_error(boolean.bytes).find("offset 37: bool value 2"), std::string::npos);
  Builder big;
  big.header(3, 0, 1).kv("a", GgufValueType::kArray).u32(10).u64(1).u64(UINT64_MAX);
  EXPECT_NE(parse_error(big.bytes).find("does not fit in int64"), std::string::npos);
  Builder deep;  // arrays nested past the depth limit
  deep.header(3, 0, 1).kv("a", GgufValueType::kArray);
  for (int i = 0; i < 20; ++i) deep.u32(9).u64(1);
  deep.u32(0).u64(0);
  EXPECT_NE(parse_error(deep.bytes).find("nested more than"), std::string::npos);
  Builder dup;
  dup.header(3, 0, 2).kv("a", GgufValueType::kUint8).u8(1).kv("a", GgufValueType::kUint8).u8(2);
  EXPECT_EQ(parse_error(dup.bytes), "t.gguf: offset 38: duplicate metadata key 'a'");
  Builder elem;
  elem.header(3, 0, 1).kv("a", GgufValueType::kArray).u32(77).u64(0);
  EXPECT_NE(parse_error(elem.bytes).find("unknown array element type 77"), std::string::npos);
}

// A file with one F32 tensor of `dims`, given type and relative offset, and optional alignment.
std::vector<uint8_t> one_tensor(std::vector<uint64_t> dims, GgmlType type, uint64_t offset, size_t data_bytes,
                                std::optional<uint32_t> alignment = std::nullopt) {
  Builder b;
  b.header(3, 1, alignment ? 1 : 0);
  if (alignment) b.kv("general.alignment", GgufValueType::kUint32).u32(*alignment);
  b.tensor("w", std::move(dims), type, offset);
  b.pad_to(alignment && *alignment > 0 && (*alignment & (*alignment - 1)) == 0 ? *alignment : 32);
  b.bytes.resize(b.bytes.size() + data_bytes);
  return b.bytes;
}

TEST(Gguf, ChecksTensorPlacement) {
  EXPECT_EQ(parse_error(one_tensor({8}, GgmlType::kF32, 0, 32)), "");
  EXPECT_NE(parse_error(one_tensor({8}, GgmlType::kF32, 0, 31)).find("32 bytes at data offset 0 run past the end"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor({8}, GgmlType::kF32, 16, 64)).find("data offset 16 is not a multiple of the alignment 32"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor({8}, GgmlType::kF32, uint64_t{1} << 62, 64)).find("run past the end"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor({8}, GgmlType::kF32, UINT64_MAX - 31, 64)).find("run past the end"), std::string::npos);
  // Custom alignment: offset 16 is fine at 16, the data section starts on a 16 boundary.
  Result<GgufFile> f = parse(one_tensor({8}, GgmlType::kF32, 16, 48, 16));
  ASSERT_TRUE(f.ok()) << f.error().message;
  EXPECT_EQ(f->alignment(), 16u);
  EXPECT_EQ(f->tensors()[0].offset, f->data_offset() + 16);
}

TEST(Gguf, ChecksAlignmentKey) {
  for (uint32_t bad : {0u, 3u, 48u}) {
    EXPECT_NE(parse_error(one_tensor({8}, GgmlType::kF32, 0, 32, bad)).find("general.alignment " + std::to_string(bad)),
              std::string::npos)
        << bad;
  }
  Builder f;
  f.header(3, 0, 1).kv("general.alignment", GgufValueType::kFloat32).f32(32.0f);
  EXPECT_EQ(parse_error(f.bytes), "t.gguf: offset 49: general.alignment must be an unsigned integer");
}

TEST(Gguf, ChecksTensorShapeAndType) {
  EXPECT_NE(parse_error(one_tensor({1, 1, 1, 1, 1}, GgmlType::kF32, 0, 32)).find("5 dimensions"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor({uint64_t{1} << 32, uint64_t{1} << 32}, GgmlType::kF32, 0, 32)).find("overflows"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor({UINT64_MAX}, GgmlType::kF32, 0, 32)).find("overflows"), std::string::npos);
  // 2^62 F32 elements fit int64 but their byte count does not fit the file (or u64 arithmetic).
  EXPECT_NE(parse_error(one_tensor({uint64_t{1} << 62}, GgmlType::kF32, 0, 32)).find("overflows"), std::string::npos);
  EXPECT_NE(parse_error(one_tensor({48}, GgmlType::kQ4_0, 0, 64)).find("first dimension 48 is not a multiple of the Q4_0 block size 32"),
            std::string::npos);
  EXPECT_NE(parse_error(one_tensor({256}, static_cast<GgmlType>(13), 0, 256)).find("ggml type 13 is not supported"),
            std::string::npos);
  // Zero-element and zero-dimension tensors are legal.
  EXPECT_EQ(parse_error(one_tensor({0, 5}, GgmlType::kQ8_0, 0, 0)), "");
  EXPECT_EQ(parse_error(one_tensor({}, GgmlType::kF32, 0, 4)), "");
  Builder dup;
  dup.header(3, 2, 0).tensor("w", {8}, GgmlType::kF32, 0).tensor("w", {8}, GgmlType::kF32, 32);
  dup.pad_to(32).bytes.resize(dup.bytes.size() + 64);
  EXPECT_EQ(parse_error(dup.bytes), "t.gguf: offset 57: duplicate tensor name 'w'");
}

TEST(Gguf, OpenReportsMissingFile) {
  Result<GgufFile> f = GgufFile::open("/nonexistent/model.gguf");
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.error().message.find("/nonexistent/model.gguf"), std::string::npos);
}

TEST(Gguf, DequantizeRejectsBadCounts) {
  std::vector<uint8_t> src(64);
  std::vector<float> dst(64);
  EXPECT_FALSE(dequantize(GgmlType::kQ4_0, src.data(), 31, dst.data()).ok());
  EXPECT_FALSE(dequantize(GgmlType::kQ4_0, src.data(), -32, dst.data()).ok());
  EXPECT_FALSE(dequantize(static_cast<GgmlType>(99), src.data(), 32, dst.data()).ok());
  EXPECT_TRUE(dequantize(GgmlType::kQ4_0, src.data(), 0, dst.data()).ok());
}

TEST(Gguf, TypeLayouts) {
  int64_t e = 0, b = 0;
  ASSERT_TRUE(ggml_type_layout(GgmlType::kQ6_K, &e, &b));
  EXPECT_EQ(e, 256);
  EXPECT_EQ(b, 210);
  ASSERT_TRUE(ggml_type_layout(GgmlType::kQ4_K, &e, &b));
  EXPECT_EQ(b, 144);
  EXPECT_FALSE(ggml_type_layout(static_cast<GgmlType>(6), &e, &b));  // Q5_0: not supported
  EXPECT_STREQ(ggml_type_name(GgmlType::kBF16), "BF16");
}

}  // namespace
}  // namespace ember
