#!/usr/bin/env python3
"""Prints the SHA-256 golden table embedded in tests/unit/test_sha256.cpp.

Messages are bytes (i * 7 + 3) & 0xff for i < length; the lengths straddle the padding
boundaries (55/56/64 bytes) where hand-written SHA-256 usually breaks. Reference: hashlib.
"""
import hashlib

LENGTHS = [0, 1, 3, 54, 55, 56, 57, 63, 64, 65, 118, 119, 120, 127, 128, 129, 1000, 4099]

for n in LENGTHS:
    msg = bytes((i * 7 + 3) & 0xFF for i in range(n))
    print(f'    {{{n}, "{hashlib.sha256(msg).hexdigest()}"}},')
