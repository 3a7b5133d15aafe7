"""Archives: many images on bits-back chains, in chunks that decode on their own.

Bits-back coding (Townsend, Bird & Barber, ICLR 2019) pays its initial bits
once per chain: an image coded alone pays them alone, images coded one after
another on one stack share them, because each image's pops take bits that the
images before it pushed. An archive puts many images on such chains, about
``chunk_subpixels`` sub-pixels each. A chunk is one chain: its images coded
in order on one stack, each as :func:`bbcodec.coding.image.encode_image`
codes it (its tiles and plane groups), except that runs of images of one
shape share batches that grow with the stack: in version 2 by a fixed share
of the images before (:data:`~bbcodec.archive.layout.BATCH_GROWTH`), in
version 3 as large as the stack pays for, chosen while coding and listed in
the chunk (:func:`bbcodec.coding.chain.encode_growing`); since version 4 a chunk's images are coded with one
calibration of the pixel likelihood chosen on a sample of them
(:func:`bbcodec.coding.calibration.choose_for_images`), as a file's image is with its own. Its first batches
are coded without bits back while that is cheaper (the chain's start:
:func:`bbcodec.coding.chain.encode_steps`; in version 3 they are one batch). One image is extracted by
decoding its chunk alone, and a damaged chunk loses its own images only: the
chunk size trades rate (one chain start per chunk) against the work of
extracting one image (bench/README.md, "Archives").

Layout (varints are LEB128, texts their UTF-8 length and bytes: :mod:`bbcodec.wire`)::

    header   b"\\xbbBBA", version (1 to 4), model id (the first 16 bytes of its hash), coder, tile, max batch,
             arithmetic (one byte, two varints, one byte), grid bits, entropy coder (text), CRC-32
    chunk    b"BBCK", body size (varint), body, CRC-32 of the body
             body: entries size, compressed entries; method (bits-back or stored); for bits-back
             the untouched seed words, the start kept, the stack size after each batch (their count
             and their compressed changes), since version 3 the images of each batch (their count and
             the compressed varints), in version 4 the chunk's calibration of the pixel likelihood (its
             length, its indices; none: 0); the payload (size, bytes); the files kept as they are
             (size, bytes each); a BLAKE2b digest of the entries and every image's pixels or kept file
    end      b"BBCE", chunks, images (varints), CRC-32 of the end record

Compressed means deflate: raw since version 2, a zlib stream in version 1; the
digest is 8 bytes since version 2, 16 in version 1
(:data:`~bbcodec.archive.layout.FORMATS`).

Entries name the chunk's images and describe them (mode, size, palette,
source format, metadata). An image that came from a file (``image.original``)
whose code on the chain is larger than that file (the stack's growth over its
batches) is kept as the file's bytes, as ``compress`` keeps such a file, and
the chunk's other images are coded again without it: an archive of files is
never much larger than the files. A run of images whose names count up (``x/0007``,
``x/0008``, ...) with the same description is one *series* entry, so the
10,000 digits of an MNIST file cost a few bytes of entries, not 10,000 names.

Everything is checked before use: the header and every chunk by CRC, sizes
against the limits before any memory is taken, names so that unpacking never
writes outside its folder, and every decoded image by its chunk's digest. A
damaged chunk is reported and skipped (the reader finds the next chunk by its
magic), so what is intact stays readable.

The package: :mod:`~bbcodec.archive.layout` (constants, header, what both
sides share), :mod:`~bbcodec.archive.entries` (names and descriptions),
:mod:`~bbcodec.archive.writer` (:func:`pack`), :mod:`~bbcodec.archive.reader`
(:class:`Archive`).
"""
from bbcodec.archive.entries import (ArchiveError, Description, Entry, Member, check_name, describe, entries_bytes,
                                     entries_of)
from bbcodec.archive.layout import (CHUNK_MAGIC, DEFAULT_CHUNK_SUBPIXELS, END_MAGIC, FORMATS, MAGIC,
                                    MAX_CHUNK_SUBPIXELS, MAX_ENTRIES_BYTES, SUFFIX, VERSION, ArchiveHeader)
from bbcodec.archive.reader import Archive, Chunk
from bbcodec.archive.writer import PackReport, pack

__all__ = ["Archive", "ArchiveError", "ArchiveHeader", "CHUNK_MAGIC", "Chunk", "DEFAULT_CHUNK_SUBPIXELS",
           "Description", "END_MAGIC", "Entry", "FORMATS", "MAGIC", "MAX_CHUNK_SUBPIXELS", "MAX_ENTRIES_BYTES",
           "Member", "PackReport", "SUFFIX", "VERSION", "check_name", "describe", "entries_bytes", "entries_of", "pack"]
