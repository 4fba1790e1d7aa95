"""timm's ViT-B/16 as the reference for benchmarks/train_throughput.py (same process, same card).

vit_base_patch16_224, 1000 classes, bf16 autocast, fused AdamW: training and bf16 inference,
once eager and once through torch.compile. Each row is timed like ours: warm-up steps
first (the first one, compilation included, reported as compile time), then `steps` steps
between two CUDA synchronisations. A failure (import, no CUDA, out of memory, compiler)
becomes a row with 'skipped' and the error, never an exception, so our rows still run.
"""

from __future__ import annotations

import time


def _sync():
    import torch

    torch.cuda.synchronize()


def _rate(fn, n: int, per_call: int) -> float:
    """Images per second of `n` calls of fn, GPU work included."""
    _sync()
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync()
    return per_call * n / (time.perf_counter() - t0)


def _bench_one(mode: str, batch: int, eval_batch: int, steps: int, warmup: int) -> dict:
    import timm
    import torch

    torch.manual_seed(0)
    model = timm.create_model("vit_base_patch16_224", num_classes=1000).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    run = torch.compile(model, dynamic=False) if mode == "compiled" else model
    x = torch.randn(batch, 3, 224, 224, device="cuda")
    y = torch.randint(0, 1000, (batch,), device="cuda")

    def train_step():
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(run(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    _sync()
    t0 = time.perf_counter()
    train_step()
    _sync()
    compile_s = time.perf_counter() - t0
    for _ in range(warmup):
        train_step()
    train_ips = _rate(train_step, steps, batch)

    model.eval()
    xe = torch.randn(eval_batch, 3, 224, 224, device="cuda")
    with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16):
        t0 = time.perf_counter()
        run(xe)
        _sync()
        infer_compile_s = time.perf_counter() - t0
        for _ in range(warmup):
            run(xe)
        infer_ips = _rate(lambda: run(xe), steps, eval_batch)
    return {
        "impl": "timm",
        "dtype": "bf16-autocast",
        "attention": f"sdpa {mode}",
        "train_img_s": train_ips,
        "train_step_ms": 1e3 * batch / train_ips,
        "train_compile_s": compile_s,
        "extract_img_s": infer_ips,
        "extract_compile_s": infer_compile_s,
        "torch": torch.__version__,
        "timm": timm.__version__,
    }


def bench_timm(
    batch: int, eval_batch: int, steps: int, warmup: int, modes=("eager", "compiled")
) -> list[dict]:
    """One row per mode; failures become 'skipped' rows. Frees torch's cached memory after."""
    try:
        import timm  # noqa: F401
        import torch
    except ImportError as e:
        return [{"impl": "timm", "skipped": f"import failed: {e}"}]
    if not torch.cuda.is_available():
        return [{"impl": "timm", "skipped": "no CUDA device for torch"}]
    rows = []
    for mode in modes:
        print(f"[bench] timm {mode} ...", flush=True)
        try:
            rows.append(_bench_one(mode, batch, eval_batch, steps, warmup))
        except Exception as e:  # noqa: BLE001  (a reference that fails must not stop ours)
            rows.append({"impl": "timm", "skipped": f"{mode}: {type(e).__name__}: {e}"[:300]})
        torch.cuda.empty_cache()
    return rows
