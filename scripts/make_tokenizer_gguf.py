#!/usr/bin/env python3
"""Writes a GGUF holding only a model's tokenizer (its tokenizer.* and general.* metadata, no
tensors): a 2-3 MB file `ember --tokenizer` reads, where the model file itself is too big to carry
(scripts/gpu_bundle.sh ships SmolLM2's to the GPU machine this way).

usage: make_tokenizer_gguf.py MODEL.gguf OUT.gguf   (run with .venv/bin/python: needs the gguf package)
"""
import sys

import gguf


def main() -> None:
    src, dst = sys.argv[1], sys.argv[2]
    reader = gguf.GGUFReader(src)
    arch = reader.fields["general.architecture"]
    writer = gguf.GGUFWriter(dst, bytes(arch.parts[arch.data[0]]).decode())
    for name, field in reader.fields.items():
        if not (name.startswith("tokenizer.") or name.startswith("general.")) or name == "general.architecture":
            continue
        vtype = field.types[0]
        if vtype == gguf.GGUFValueType.ARRAY:
            sub = field.types[-1]
            if sub == gguf.GGUFValueType.STRING:
                value = [bytes(field.parts[i]).decode("utf-8", errors="surrogateescape") for i in field.data]
            else:
                value = [field.parts[i].tolist()[0] for i in field.data]
            writer.add_key_value(name, value, vtype, sub_type=sub)
        elif vtype == gguf.GGUFValueType.STRING:
            writer.add_key_value(name, bytes(field.parts[field.data[0]]).decode("utf-8", errors="surrogateescape"), vtype)
        else:
            writer.add_key_value(name, field.parts[field.data[0]].tolist()[0], vtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


if __name__ == "__main__":
    main()
