// load_sentencepiece_model: tokenizer.model through the sentencepiece library.
// The library encodes; ember reads the piece types and the dummy-prefix flag
// from the model proto itself (the library's API exposes neither
// user-defined types nor the normalizer spec).

#include <sentencepiece_processor.h>

#include <cstring>
#include <fstream>

#include "models/tokenizer/tokenizer_spm.h"

namespace ember {

namespace {

constexpr uint64_t kMaxModelBytes = 256ull << 20;
constexpr size_t kMaxPieces = 4u << 20;

// A bounds-checked reader of the protobuf wire format, just enough for
// ModelProto { repeated SentencePiece pieces = 1; NormalizerSpec normalizer_spec = 3; }.
class ProtoReader {
 public:
  ProtoReader(std::string_view data, const std::string& file, size_t base)
      : data_(data), file_(file), base_(base) {}

  bool done() const { return pos_ >= data_.size(); }

  // Reads a field header; `wire` is the wire type.
  Status next(uint32_t* field, uint32_t* wire) {
    uint64_t tag = 0;
    if (Status s = varint(&tag); !s) return s;
    *field = static_cast<uint32_t>(tag >> 3);
    *wire = static_cast<uint32_t>(tag & 7);
    if (*field == 0) return fail("field number 0");
    return Status::success();
  }

  Status varint(uint64_t* value) {
    *value = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ >= data_.size()) return fail("truncated varint");
      const auto b = static_cast<uint8_t>(data_[pos_++]);
      *value |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return Status::success();
    }
    return fail("varint longer than 10 bytes");
  }

  Status bytes(std::string_view* out, size_t* offset) {
    uint64_t len = 0;
    if (Status s = varint(&len); !s) return s;
    if (len > data_.size() - pos_) return fail("length " + std::to_string(len) + " runs past the end");
    *offset = base_ + pos_;
    *out = data_.substr(pos_, len);
    pos_ += len;
    return Status::success();
  }

  Status fixed32(uint32_t* value) {
    if (data_.size() - pos_ < 4) return fail("truncated fixed32");
    *value = 0;
    for (int i = 0; i < 4; ++i) *value |= static_cast<uint32_t>(static_cast<uint8_t>(data_[pos_ + i])) << (8 * i);
    pos_ += 4;
    return Status::success();
  }

  Status skip(uint32_t wire) {
    uint64_t v = 0;
    uint32_t f32 = 0;
    std::string_view b;
    size_t off = 0;
    switch (wire) {
      case 0: return varint(&v);
      case 1:
        if (data_.size() - pos_ < 8) return fail("truncated fixed64");
        pos_ += 8;
        return Status::success();
      case 2: return bytes(&b, &off);
      case 5: return fixed32(&f32);
      default: return fail("unsupported wire type " + std::to_string(wire));
    }
  }

  Error fail(const std::string& what) const {
    return Error{file_ + ": bad sentencepiece model at byte " + std::to_string(base_ + pos_) + ": " + what};
  }

 private:
  std::string_view data_;
  const std::string& file_;
  size_t base_;
  size_t pos_ = 0;
};

Status parse_piece(std::string_view msg, size_t offset, const std::string& file, SpmVocab* vocab) {
  ProtoReader r(msg, file, offset);
  std::string piece;
  float score = 0.0f;
  uint64_t type = 1;  // NORMAL is the proto default
  while (!r.done()) {
    uint32_t field = 0, wire = 0;
    if (Status s = r.next(&field, &wire); !s) return s;
    if (field == 1 && wire == 2) {
      std::string_view b;
      size_t off = 0;
      if (Status s = r.bytes(&b, &off); !s) return s;
      piece = std::string(b);
    } else if (field == 2 && wire == 5) {
      uint32_t bits = 0;
      if (Status s = r.fixed32(&bits); !s) return s;
      static_assert(sizeof(float) == sizeof(uint32_t));
      std::memcpy(&score, &bits, sizeof(score));
    } else if (field == 3 && wire == 0) {
      if (Status s = r.varint(&type); !s) return s;
    } else if (Status s = r.skip(wire); !s) {
      return s;
    }
  }
  if (type < 1 || type > 6) return r.fail("piece \"" + piece + "\" has unknown type " + std::to_string(type));
  vocab->pieces.push_back(std::move(piece));
  vocab->scores.push_back(score);
  vocab->types.push_back(static_cast<SpmPieceType>(type));
  return Status::success();
}

Status parse_model(std::string_view data, const std::string& file, SpmVocab* vocab) {
  ProtoReader r(data, file, 0);
  while (!r.done()) {
    uint32_t field = 0, wire = 0;
    if (Status s = r.next(&field, &wire); !s) return s;
    if ((field == 1 || field == 3) && wire == 2) {
      std::string_view msg;
      size_t off = 0;
      if (Status s = r.bytes(&msg, &off); !s) return s;
      if (field == 1) {
        if (vocab->pieces.size() >= kMaxPieces) return r.fail("more than " + std::to_string(kMaxPieces) + " pieces");
        if (Status s = parse_piece(msg, off, file, vocab); !s) return s;
        continue;
      }
      ProtoReader n(msg, file, off);  // NormalizerSpec; repeated occurrences merge, the last value wins
      while (!n.done()) {
        uint32_t nf = 0, nw = 0;
        if (Status s = n.next(&nf, &nw); !s) return s;
        uint64_t v = 0;
        if (nf == 3 && nw == 0) {
          if (Status s = n.varint(&v); !s) return s;
          vocab->add_dummy_prefix = v != 0;
        } else if (Status s = n.skip(nw); !s) {
          return s;
        }
      }
    } else if (Status s = r.skip(wire); !s) {
      return s;
    }
  }
  if (vocab->pieces.empty()) return Error{file + ": sentencepiece model has no pieces"};
  return Status::success();
}

class SpmLibraryTokenizer final : public SpmTokenizer {
 public:
  SpmLibraryTokenizer(SpmVocab vocab, std::unique_ptr<sentencepiece::SentencePieceProcessor> sp,
                      std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_no_prefix)
      : SpmTokenizer(std::move(vocab)), sp_(std::move(sp)), sp_no_prefix_(std::move(sp_no_prefix)) {}

 protected:
  void encode_segment(std::string_view text, bool at_start, std::vector<int32_t>* ids) const override {
    std::vector<int> out;
    const auto& sp = at_start ? *sp_ : *sp_no_prefix_;
    if (!sp.Encode(text, &out).ok()) {  // only on invalid UTF-8, which encode() has repaired
      if (vocab().unk_id >= 0) ids->push_back(vocab().unk_id);
      return;
    }
    ids->insert(ids->end(), out.begin(), out.end());
  }

 private:
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  // The same model with add_dummy_prefix=false, for segments after a special token.
  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_no_prefix_;
};

}  // namespace

Result<std::unique_ptr<SpmTokenizer>> load_spm_library_tokenizer(const std::string& path) {
  std::ifstream in(path, std::ios::binary | std::ios::ate);
  if (!in) return Error{path + ": cannot open sentencepiece model"};
  const std::streamoff size = in.tellg();
  if (size <= 0 || static_cast<uint64_t>(size) > kMaxModelBytes) {
    return Error{path + ": sentencepiece model size " + std::to_string(size) + " is not in (0, 256 MiB]"};
  }
  std::string data(static_cast<size_t>(size), '\0');
  in.seekg(0);
  if (!in.read(data.data(), size)) return Error{path + ": read failed"};

  SpmVocab vocab;
  if (Status s = parse_model(data, path, &vocab); !s) return s.error();

  auto sp = std::make_unique<sentencepiece::SentencePieceProcessor>();
  if (auto st = sp->LoadFromSerializedProto(data); !st.ok()) return Error{path + ": sentencepiece: " + st.ToString()};
  // Appending a second normalizer_spec (field 3) holding add_dummy_prefix
  // (field 3) = false merges into the first: protobuf's rule for repeated
  // occurrences of a message field.
  auto sp_no_prefix = std::make_unique<sentencepiece::SentencePieceProcessor>();
  if (auto st = sp_no_prefix->LoadFromSerializedProto(data + std::string("\x1a\x02\x18\x00", 4)); !st.ok()) {
    return Error{path + ": sentencepiece: " + st.ToString()};
  }
  if (sp->GetPieceSize() != static_cast<int>(vocab.pieces.size())) {
    return Error{path + ": sentencepiece reports " + std::to_string(sp->GetPieceSize()) + " pieces, the proto has " +
                 std::to_string(vocab.pieces.size())};
  }
  vocab.bos_id = sp->bos_id();
  vocab.eos_id = sp->eos_id();
  vocab.unk_id = sp->unk_id();
  return std::unique_ptr<SpmTokenizer>(
      std::make_unique<SpmLibraryTokenizer>(std::move(vocab), std::move(sp), std::move(sp_no_prefix)));
}

Result<std::unique_ptr<Tokenizer>> load_sentencepiece_model(const std::string& path) {
  auto tok = load_spm_library_tokenizer(path);
  if (!tok) return tok.error();
  return std::unique_ptr<Tokenizer>(std::move(tok).value());
}

}  // namespace ember
