#pragma once
// Loader for GGUF vocabularies of type "llama" (SentencePiece: scores + byte
// fallback). Implemented by the SentencePiece side in tokenizer_spm_gguf.cpp;
// load_tokenizer_from_gguf (tokenizer_gguf.cpp) dispatches to it.

#include <memory>

#include "common/status.h"
#include "models/tokenizer/tokenizer.h"

namespace ember {

class GgufFile;

Result<std::unique_ptr<Tokenizer>> load_spm_tokenizer_from_gguf(const GgufFile& gguf);

}  // namespace ember
