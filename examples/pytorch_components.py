"""pytorch_components.py - PyTorch with an arena per model component (cuarena.torch).

    PYTHONPATH=python CUARENA_LIB=build/libcuarena.so python3 examples/pytorch_components.py

A text encoder and a transformer are built in arenas of their own (the
activations go to the transformer's); the encoder runs, is offloaded (its pages go back to the driver, its tensors keep
their addresses), the transformer runs, the encoder is restored and gives the
same output; then both components are dropped and their arenas destroyed,
every byte back. Prints "pytorch_components: " lines. Exit status 0 when all
held, 1 otherwise, 77 (skipped) without torch or a CUDA device.
"""

import sys

try:
    import torch
except ImportError:
    print("pytorch_components: skipped: torch is not installed")
    sys.exit(77)
if not torch.cuda.is_available():
    print("pytorch_components: skipped: no CUDA device")
    sys.exit(77)

import cuarena
import cuarena.torch

MIB = 1 << 20


def main():
    cuarena.torch.install(full=False)  # before the first CUDA tensor
    torch.manual_seed(0)
    enc_arena = cuarena.Arena("text_encoder")
    tr_arena = cuarena.Arena("transformer", limit="4G")
    with enc_arena:
        encoder = torch.nn.Sequential(torch.nn.Embedding(32000, 1024),
                                      torch.nn.Linear(1024, 1024)).cuda()
    with tr_arena:
        transformer = torch.nn.TransformerEncoder(
            torch.nn.TransformerEncoderLayer(1024, 16, 4096, batch_first=True), 4).cuda()
    tokens = torch.randint(0, 32000, (4, 77), device="cuda")
    ptrs = [p.data_ptr() for p in encoder.parameters()]
    with torch.no_grad():
        # the encoder's weights are in its arena; what it computes goes to the
        # transformer's, which stays on the GPU while the encoder is away
        with tr_arena:
            emb = encoder(tokens)
        free0 = torch.cuda.mem_get_info()[0]
        enc_arena.offload()                        # the encoder leaves the GPU
        freed = torch.cuda.mem_get_info()[0] - free0
        with tr_arena:
            out = transformer(emb)
        enc_arena.restore()                        # same addresses, same weights
        with tr_arena:
            emb2 = encoder(tokens)
    same = torch.equal(emb, emb2) and ptrs == [p.data_ptr() for p in encoder.parameters()]
    print("pytorch_components: encoder %.1f MiB offloaded (driver free +%.1f MiB), transformer "
          "%.1f MiB live, output %s; after restore: %s" % (
              enc_arena.stats()["live_bytes"] / MIB, freed / MIB,
              tr_arena.stats()["live_bytes"] / MIB, tuple(out.shape),
              "same weights, same pointers, same output" if same else "DIFFERENT"))
    del encoder, transformer, emb, emb2, out
    torch.cuda.synchronize()
    # torch keeps cuBLAS's workspaces (32 MiB and more per handle and stream)
    # for the life of the process, in the arena current at the first matmul:
    # give them back before the arena goes
    torch._C._cuda_clearCublasWorkspaces()
    left = {a.name: a.stats()["live_bytes"] for a in (enc_arena, tr_arena)}
    for a in (enc_arena, tr_arena):
        a.destroy()
    print("pytorch_components: live bytes left at teardown %s; both arenas destroyed" % left)
    ok = same and freed > 0 and all(v == 0 for v in left.values())
    print("pytorch_components: %s" % ("ok" if ok else "FAILED"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
