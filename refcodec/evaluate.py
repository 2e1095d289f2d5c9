"""Kodak evaluation: RD points, BD-rates, cross-decoder equality, RD plot (informative).

For every image and rate point: the float model (rate = ideal code length under
the float entropy model, distortion of the float synthesis rounded to 8 bits),
and for each integer profile the real bitstream (size in bytes) decoded by
refdec; the encoder's own reconstruction and (with --torch-check) the torch
decoder must give identical samples, which is counted and reported. Anchors:
JPEG 4:2:0 and 4:4:4, WebP and AVIF through Pillow, at quality sweeps.

Results are cached per item in OUT/cache.json, so an interrupted run resumes.
With --refine STEPS the encoder codes latents refined for the rate-distortion cost
(refcodec.refine) instead of the analysis output; run into OUT/refined/, it gets its own
page there and a summary section on OUT's page, against the plain encoder on the same images.

    python -m refcodec.evaluate --checkpoint models/float.pt \
        --model refdec/models/refdec-test-w16a16.npz --model refdec/models/refdec-test-w8a16.npz --out results/
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

from refdec.bitstream import HEADER_SIZE
from refdec.decoder import decode
from refdec.model_file import load_model

from . import ceiling, refine
from .codec import analyse, decode_torch, encode_latents, encoder_reconstruction, load_rgb, psnr
from .experiment import ANCHORS, anchor_point, curve_bd_rate, float_point, mean_curve
from .model import load_float_model
from .options import DEFAULT_KODAK, non_negative
from .refine import refine_latents
from .train import LAMBDAS

def main(argv=None):
    ap = argparse.ArgumentParser(prog="refcodec evaluate", description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", type=Path, required=True)
    ap.add_argument("--refine", type=non_negative, default=0, metavar="STEPS",
                    help="code latents refined by STEPS steps (refcodec.refine; about 100 s per 768x512 image "
                         "and rate point at 100 steps on two cores) instead of the analysis output")
    ap.add_argument("--model", type=Path, action="append", default=[], help="integer model file(s)")
    ap.add_argument("--kodak", type=Path, default=DEFAULT_KODAK)
    ap.add_argument("--images", type=int, default=24)
    ap.add_argument("--rates", default="0,1,2,3,4,5")
    ap.add_argument("--torch-check", default="first",
                    help="decode with the torch decoder too: every stream (all), the first image's (first), "
                         "none, or all:PROFILE (every stream of that profile, the first image's of the others)")
    ap.add_argument("--anchors-only", action="store_true", help="compute only the anchor codecs' points")
    ap.add_argument("--out", type=Path, default=Path("results"))
    ap.add_argument("--shard", default="0/1", help="I/N: process images with index %% N == I (parallel runs)")
    ap.add_argument("--report-only", action="store_true", help="only merge the caches and write the report")
    args = ap.parse_args(argv)
    if not args.anchors_only:
        try:  # checked first: the plot comes at the end of a long run
            import matplotlib  # noqa: F401
        except ImportError:
            raise SystemExit('error: the RD plot needs matplotlib: pip install -e ".[eval]"') from None
    torch.set_num_threads(max(1, torch.get_num_threads()))
    args.out.mkdir(parents=True, exist_ok=True)
    shard, shards = (int(v) for v in args.shard.split("/"))
    cache_path = args.out / f"cache.{shard}.json"
    mine = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    cache = {}
    for other in sorted(args.out.glob("cache.*.json")):  # results of every shard
        cache.update(json.loads(other.read_text()))

    def cached(key, fn):
        if key not in cache:
            cache[key] = fn()
            mine[key] = cache[key]
            cache_path.write_text(json.dumps(mine, indent=0, sort_keys=True))
        return cache[key]

    float_model = load_float_model(args.checkpoint).eval()
    int_models = [load_model(p) for p in args.model]
    # Results are keyed by what made them: the checkpoint's and the model files' hashes, and the
    # refinement's step count. Entries of other checkpoints, models or refinements are dropped (the
    # anchors do not depend on them and stay).
    refined = f"+refine@{args.refine}" if args.refine else ""
    labels = {"float": f"float@{hashlib.sha256(args.checkpoint.read_bytes()).hexdigest()[:16]}{refined}"}
    labels.update({m.header["profile"]: f"{m.header['profile']}@{m.model_id.hex()}{refined}" for m in int_models})
    int_labels = {labels[m.header["profile"]] for m in int_models}

    def stale(key, item):  # integer entries of earlier versions lack the ideal code length
        label = key.split("|")[0]
        return (label not in labels.values() and label not in ANCHORS) or (label in int_labels and "container_bytes" not in item)

    for store in (cache, mine):
        for key in [k for k, item in store.items() if stale(k, item)]:
            del store[key]
    cache_path.write_text(json.dumps(mine, indent=0, sort_keys=True))
    torch_all = {m.header["profile"] for m in int_models} if args.torch_check == "all" else (
        {args.torch_check.split(":", 1)[1]} if args.torch_check.startswith("all:") else set())
    files = sorted(args.kodak.glob("kodim*.png"))[: args.images]
    rates = [int(r) for r in args.rates.split(",")]
    t0 = time.time()
    for i, path in enumerate(files):
        if args.report_only or i % shards != shard:
            continue
        img = load_rgb(path)
        for r in [] if args.anchors_only else rates:
            latents = {}

            def coded_latents():  # (z_hat, y_hat), computed once per image and rate point
                if not latents:
                    latents["zy"] = refine_latents(float_model, img, r, args.refine)[:2] if args.refine \
                        else analyse(float_model, img, r)
                return latents["zy"]

            cached(f"{labels['float']}|{path.name}|{r}",
                   lambda: dict(zip(("bpp", "psnr"), float_point(float_model, img, r, coded_latents()))))
            for m in int_models:
                prof = m.header["profile"]

                def run():
                    enc = encode_latents(m, *coded_latents(), img.shape[1], img.shape[0], r)
                    dec = decode(enc.stream, m).image
                    rec = encoder_reconstruction(m, enc)
                    item = {"bpp": enc.bits_per_pixel, "ideal_bpp": enc.ideal_bits_per_pixel,
                            "container_bytes": len(enc.stream) - enc.ideal_bits / 8,
                            "psnr": psnr(dec.transpose(1, 2, 0), img),
                            "encoder_equal": bool(np.array_equal(rec, dec))}
                    if prof in torch_all or (args.torch_check != "none" and i == 0):
                        item["torch_equal"] = bool(np.array_equal(decode_torch(enc.stream, m), dec))
                    return item

                cached(f"{labels[prof]}|{path.name}|{r}", run)
        for name, (fmt, opts, qualities) in ANCHORS.items():
            for q in qualities:
                cached(f"{name}|{path.name}|{q}", lambda: dict(zip(("bpp", "psnr"), anchor_point(img, fmt, opts, q))))
        print(f"[{i + 1}/{len(files)}] {path.name}  {time.time() - t0:.0f}s", flush=True)

    if args.anchors_only:
        print("anchors only: no report written")
        return 0
    write_report(cache, files, rates, int_models, args, labels)
    return 0


def collect(cache, label, files, settings):
    pts = []
    for f in files:
        for s in settings:
            item = cache.get(f"{label}|{f.name}|{s}")
            if item:
                pts.append(dict(item, setting=s, image=f.name))
    return pts


def complete_images(cache, files, rates, int_models, labels):
    """The images that every codec has been evaluated on at every setting.

    Means and BD-rates are taken over these only, so that every curve averages the same images;
    an interrupted evaluation reports fewer images instead of mixing subsets."""
    wanted = [(labels["float"], rates)] + [(labels[m.header["profile"]], rates) for m in int_models]
    wanted += [(name, qualities) for name, (_, _, qualities) in ANCHORS.items()]
    return [f for f in files if all(f"{label}|{f.name}|{s}" in cache for label, settings in wanted for s in settings)]


def write_report(cache, requested, rates, int_models, args, labels):
    files = complete_images(cache, requested, rates, int_models, labels)
    if not files:
        raise SystemExit("error: no image has been evaluated at every setting yet; nothing to report")
    curves, checks, ideal_curves, container = {}, {}, {}, {}
    curves["float"] = mean_curve(collect(cache, labels["float"], files, rates))
    for m in int_models:
        prof = m.header["profile"]
        pts = collect(cache, labels[prof], files, rates)
        curves[prof] = mean_curve(pts)
        ideal_curves[prof] = mean_curve([dict(p, bpp=p["ideal_bpp"]) for p in pts])
        # Bytes of a stream beyond its ideal code length: the header of clause 6.2 and the range
        # coder's termination and rounding.
        container[prof] = float(np.mean([p["container_bytes"] for p in pts]))
        checks[prof] = {"streams": len(pts), "encoder_equal": sum(p["encoder_equal"] for p in pts),
                        "torch_checked": sum("torch_equal" in p for p in pts),
                        "torch_equal": sum(bool(p.get("torch_equal")) for p in pts)}
    for name, (_, _, qualities) in ANCHORS.items():
        curves[name] = mean_curve(collect(cache, name, files, qualities))

    def bd_of(t, anchor):
        return curve_bd_rate(curves[anchor], t)

    def bd(test, anchor):
        return bd_of(curves[test], anchor)

    bds = {}
    for m in int_models:
        prof = m.header["profile"]
        bds[f"{prof} vs float, ideal code lengths (integerisation)"] = bd_of(ideal_curves[prof], "float")
        bds[f"{prof} vs float, bitstream bytes (integerisation and container)"] = bd(prof, "float")
    for name in ["float"] + [m.header["profile"] for m in int_models] + list(ANCHORS)[1:]:
        bds[f"{name} vs JPEG 4:2:0"] = bd(name, "JPEG 4:2:0")
    for anchor in ("WebP", "AVIF 4:4:4 speed 4"):
        bds[f"float vs {anchor}"] = bd("float", anchor)
    sidecar = args.checkpoint.with_suffix(".json")
    step = json.loads(sidecar.read_text()).get("step") if sidecar.is_file() else None
    summary = {"images": [f.name for f in files], "images_requested": len(requested), "rates": rates, "lambdas": LAMBDAS, "curves": curves,
               "bd_rate_percent": bds, "ideal_curves": ideal_curves, "container_bytes": container,
               "decoder_agreement": checks, "checkpoint": str(args.checkpoint),
               "training_step": step, "refine_steps": args.refine, "labels": labels}
    (args.out / "kodak.json").write_text(json.dumps(summary, indent=1))
    history = update_history(args.out / "checkpoints.json", labels["float"], step, len(files), curves["float"], bds) \
        if curves["float"] else {}
    refined_path = args.out / REFINED_DIR / "kodak.json"
    refined = json.loads(refined_path.read_text()) if not args.refine and refined_path.is_file() else None
    plotted = dict(curves)
    if refined and is_refinement_of(refined, labels["float"]) and \
            refined["images"] == [f.name for f in files]:  # the same images: the curves compare
        plotted[f"float, latents refined ({refined['refine_steps']} steps)"] = refined["curves"]["float"]
    plot(plotted, args.out / "rd_kodak.png")
    missing = "" if len(files) == len(requested) else (
        f" (of {len(requested)} requested: the evaluation of the others is not complete, and they are left out)")
    refined_note = f", latents refined by {args.refine} steps per image and rate point (`refcodec.refine`)" \
        if args.refine else ""
    lines = ["# Kodak results", "", f"{len(files)} images{missing}, checkpoint `{args.checkpoint}`"
             + (f" (training step {step})" if step is not None else "") + refined_note + ". "
             "Generated by `python -m refcodec.evaluate`; numbers in `kodak.json`.", "",
             "## BD-rate (negative: fewer bits at equal RGB PSNR)", "",
             "The float model's rate is its ideal code length (no bitstream exists for it). The integer "
             "profiles are compared with it twice: by their own ideal code length under the integer "
             "frequency tables, which is the cost of integerisation alone, and by the size of the real "
             "bitstream, which adds the container (mean bytes per stream beyond the ideal code length: "
             + ", ".join(f"{p} {b:.1f}" for p, b in container.items()) + f"; the header alone is "
             f"{HEADER_SIZE} bytes).", "", "| comparison | BD-rate |", "|---|---|"]
    lines += [f"| {k} | {v:+.2f}% |" if not math.isnan(v) else f"| {k} | n/a (curves do not overlap) |"
              for k, v in bds.items()]
    lines += ["", "## Rate points (mean over images)", "", "| codec | setting | bpp | RGB PSNR (dB) |", "|---|---|---|---|"]
    for name, curve in curves.items():
        lines += [f"| {name} | {c['setting']} | {c['bpp']:.4f} | {c['psnr']:.2f} |" for c in curve]
        if name in ideal_curves:
            lines += [f"| {name}, ideal code length | {c['setting']} | {c['bpp']:.4f} | {c['psnr']:.2f} |"
                      for c in ideal_curves[name]]
    lines += ["", "## Decoder agreement", "", "| profile | streams | encoder reconstruction identical | "
              "torch decoder checked | torch identical |", "|---|---|---|---|---|"]
    lines += [f"| {p} | {c['streams']} | {c['encoder_equal']} | {c['torch_checked']} | {c['torch_equal']} |"
              for p, c in checks.items()]
    lines += ["", "![RD curves](rd_kodak.png)", ""]
    lines += ["## Where each checkpoint stands", "",
              "Every evaluated float checkpoint (`checkpoints.json`): Kodak mean RGB PSNR at the lowest and highest "
              "rate point, and BD-rates of the float model (negative: better than the anchor); the checkpoint that this page "
              "evaluates (the committed one) is marked, the others were evaluated and not committed. For checkpoints "
              f"evaluated on the same {len(files)} images the BD-rates are recomputed against the anchor curves "
              "above; the others show the figures of their own evaluation.", "",
              "| training step | checkpoint | images | lowest rate | highest rate | vs JPEG 4:2:0 | vs WebP | vs AVIF |",
              "|---|---|---|---|---|---|---|---|"]

    def pct(v):
        return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:+.1f}%"

    anchors = ("JPEG 4:2:0", "WebP", "AVIF 4:4:4 speed 4")
    for key, h in sorted(history.items(), key=lambda kv: (kv[1]["step"] or 0)):
        lo, hi = h["curve"][0], h["curve"][-1]
        same_images = h["images"] == len(files)
        vs = [bd_of(h["curve"], a) if same_images else h["bd"].get(f"float vs {a}") for a in anchors]
        committed = " (this page)" if key == labels["float"] else ""
        lines.append(f"| {h['step']} | `{key.split('@')[1][:8]}`{committed} | {h['images']} | {lo['psnr']:.2f} dB at "
                     f"{lo['bpp']:.3f} bpp | {hi['psnr']:.2f} dB at {hi['bpp']:.3f} bpp | "
                     + " | ".join(pct(v) for v in vs) + " |")
    cross = args.out / "crossdevice.json"
    if cross.is_file():
        doc = json.loads(cross.read_text())
        setup = doc.get("setup", {})
        lines += ["", "## The cross-device failure of a float entropy model", "",
                  f"`python -m refcodec.crossdevice` (numbers in `crossdevice.json`): the float model's entropy "
                  f"networks decode their own streams after a perturbation that differs between devices; "
                  f"rate index {setup.get('rate', '?')}, {setup.get('crop', '?')}, checkpoint at training step "
                  f"{setup.get('training_step', '?')}. The integer decoders (refdec, the torch decoder) decode every "
                  "stream of the table above identically, on every thread count (tests/test_crossdevice.py).", "",
                  "| perturbation | images | decoded wrongly | wrong latents | CDF tables that differ |",
                  "|---|---|---|---|---|"]
        names = {"float64": "float64 instead of float32", "ulp": "scales one float32 ulp up",
                 "threads": "another thread count"}
        for variant, sm in doc["summary"].items():
            lines.append(f"| {names.get(variant, variant)} | {sm['images']} | {sm['images_decoded_wrongly']} | "
                         f"{sm['wrong_latents']} of {sm['elements']} ({100 * sm['wrong_latents'] / sm['elements']:.1f}%)"
                         f" | {sm['mismatched_tables']} ({100 * sm['mismatched_tables'] / sm['elements']:.1f}%) |")
        lines.append("")
    if refined:
        lines += refined_lines(refined, cache, labels["float"], files, rates)
    # The informative experiments, where their JSON files are next to kodak.json.
    for name, experiment in (("ceiling.json", ceiling), ("refine.json", refine)):
        if (args.out / name).is_file():
            lines += experiment.report_lines(json.loads((args.out / name).read_text()), name)
    (args.out / "README.md").write_text("\n".join(lines))
    print("\n".join(lines))


REFINED_DIR = "refined"  # OUT/refined/: the evaluation with --refine, summarised on OUT's page


def is_refinement_of(doc: dict, float_label: str) -> bool:
    """Whether a kodak.json of an evaluation with --refine is of the checkpoint of float_label."""
    return doc["labels"]["float"].startswith(float_label + "+refine@")


def refined_lines(doc: dict, cache: dict, float_label: str, files, rates) -> list[str]:
    """The main page's section on the evaluation with refined latents (OUT/refined/kodak.json):
    its BD-rates, and against the plain encoder on the same images (from this page's cache)."""
    head = [f"## The same decoder with the refining encoder (`{REFINED_DIR}/`)", ""]
    if not is_refinement_of(doc, float_label):
        return head + [f"`{REFINED_DIR}/kodak.json` is of another checkpoint ({doc['labels']['float']}): "
                       "run the evaluation with --refine again.", ""]
    subset = [f for f in files if f.name in doc["images"]]
    curves = dict(doc["curves"], plain=mean_curve(collect(cache, float_label, subset, rates)))

    rows = {"refined vs plain encoder (float model, ideal code length)": curve_bd_rate(curves["plain"], curves["float"])}
    for anchor in ("JPEG 4:2:0", "WebP", "AVIF 4:4:4 speed 4"):
        rows[f"refined vs {anchor} (float model)"] = curve_bd_rate(curves[anchor], curves["float"])
        if "W16A16" in curves:
            rows[f"refined W16A16 stream bytes vs {anchor}"] = curve_bd_rate(curves[anchor], curves["W16A16"])
    agreement = doc["decoder_agreement"].get("W16A16", {})
    lines = head + [
        f"`python -m refcodec.evaluate ... --refine {doc['refine_steps']} --out results/{REFINED_DIR}/` (its own "
        f"page: `{REFINED_DIR}/README.md`): {len(subset)} of the {len(files)} images above, latents refined by "
        f"{doc['refine_steps']} steps per image and rate point (`refcodec.refine`; spec annex A.1). The decoder and "
        f"the model are the same: refdec decodes {agreement.get('encoder_equal', 0)} of {agreement.get('streams', 0)} "
        "W16A16 streams to the encoder's own reconstruction.", "",
        "| comparison | BD-rate |", "|---|---|"]
    lines += [f"| {k} | {v:+.2f}% |" if not math.isnan(v) else f"| {k} | n/a (curves do not overlap) |"
              for k, v in rows.items()]
    lines += ["", "| rate | plain bpp | plain dB | refined bpp | refined dB | refined W16A16 stream bpp |",
              "|---|---|---|---|---|---|"]
    for p, r, i in zip(curves["plain"], curves["float"], curves.get("W16A16", curves["float"])):
        lines.append(f"| {r['setting']} | {p['bpp']:.4f} | {p['psnr']:.2f} | {r['bpp']:.4f} | {r['psnr']:.2f} | "
                     f"{i['bpp']:.4f} |")
    return lines + [""]


def update_history(path: Path, label: str, step, images: int, float_curve, bds) -> dict:
    """results/checkpoints.json: one entry per evaluated float checkpoint (by its hash)."""
    history = json.loads(path.read_text()) if path.is_file() else {}
    history[label] = {"step": step, "images": images, "curve": float_curve,
                      "bd": {k: v for k, v in bds.items() if k.startswith("float vs")}}
    path.write_text(json.dumps(history, indent=1, sort_keys=True))
    return history


def plot(curves, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 5), dpi=110)
    for name, curve in curves.items():
        if curve:
            ax.plot([c["bpp"] for c in curve], [c["psnr"] for c in curve], marker="o", ms=3, label=name)
    ax.set_xlabel("bits per pixel")
    ax.set_ylabel("RGB PSNR (dB)")
    ax.set_xlim(0, 1.6)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Kodak, mean over images")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
