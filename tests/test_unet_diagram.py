"""unet_diagram (chapter 5): the drawing is checked against what the real network computes.

The expected blocks, channels, sizes and skips come from a forward pass of the model on a dummy
input (hooks on its modules and on ``torch.cat``), not from the walk the diagram itself does.
"""

import re

import matplotlib
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import FancyArrowPatch, Rectangle
from matplotlib.text import Text

import ddpm_core as dc
from ddpm_core.model.blocks import ResBlock, SelfAttention
from ddpm_core.notebook.style import BOOK_RC
from ddpm_core.notebook.unet_diagram import unet_diagram

CASES = {"default": ({}, 8), "deep": ({"channel_mults": (1, 2, 2), "num_res_blocks": 2}, 28),
         "conditional": ({"num_classes": 10}, 8)}
BLOCK = re.compile(r"^(conv_in|out|(down|mid|up)\.\d+)$")


def _trace(model, size, monkeypatch):
    """Run the model once; return {block: (c_in, c_out, H)}, the attention sizes and {(pusher, popper): skip channels}."""
    blocks = {"conv_in": model.conv_in, "out": model.out,
              **{f"{p}.{i}": m for p in ("down", "mid", "up") for i, m in enumerate(getattr(model, p))}}
    shapes, made_by, cat_src, pairs, attention, alive = {}, {}, {}, {}, [], []
    real_cat = torch.cat

    def cat(tensors, *args, **kwargs):
        out = real_cat(tensors, *args, **kwargs)
        if len(tensors) == 2 and id(tensors[1]) in made_by:
            cat_src[id(out)] = made_by[id(tensors[1])], tensors[1].shape[1]
        alive.append(out)
        return out

    def hook(name):
        def record(module, inputs, output):
            shapes[name] = (inputs[0].shape[1], output.shape[1], output.shape[-1])
            made_by[id(output)] = name
            alive.append(output)  # keep ids unique
            if id(inputs[0]) in cat_src:
                source, channels = cat_src[id(inputs[0])]
                pairs[source, name] = channels
        return record

    handles = [m.register_forward_hook(hook(n)) for n, m in blocks.items()]
    handles += [m.register_forward_hook(lambda m, i, o: attention.append(o.shape[-1]))
                for m in model.modules() if isinstance(m, SelfAttention)]
    monkeypatch.setattr(torch, "cat", cat)
    with torch.no_grad():
        model.eval()(torch.zeros(1, model.config.in_channels, size, size), torch.tensor([1]))
    for h in handles:
        h.remove()
    return shapes, sorted(attention), pairs


def _drawn(fig):
    """{gid: Text} of the figure's named texts, the skip arrows, and the resolution bands [(y0, y1, label)]."""
    texts = {t.get_gid(): t for t in fig.findobj(Text) if t.get_gid()}
    skips = [p for p in fig.findobj(FancyArrowPatch) if (p.get_gid() or "").startswith("skip:")]
    bands = []
    for p in fig.findobj(Rectangle):
        if (p.get_gid() or "").startswith("band:"):
            label = texts["band-label:" + p.get_gid().split(":")[1]].get_text()
            bands.append((p.get_y(), p.get_y() + p.get_height(), label))
    return texts, skips, bands


def _band_of(text, bands):
    y = text.get_position()[1]
    (label,) = [lab for y0, y1, lab in bands if y0 < y < y1]
    return label


@pytest.fixture(scope="module", params=sorted(CASES))
def case(request):
    overrides, size = CASES[request.param]
    model = dc.UNet(dc.UNetConfig(**overrides))
    return request.param, model, size, unet_diagram(model, size)


def test_every_block_is_drawn_with_the_channels_and_size_it_computes(case, monkeypatch):
    _, model, size, fig = case
    shapes, _, skips = _trace(model, size, monkeypatch)
    skip_ch = {popper: c for (_, popper), c in skips.items()}
    texts, _, bands = _drawn(fig)
    assert {g for g in texts if BLOCK.match(g)} == set(shapes)
    for name, (c_in, c_out, res) in shapes.items():
        label = texts[name].get_text()
        m = re.search(r"(\d+)(?:\+(\d+))?→(\d+) ch", label)
        if m:  # "a→c ch" or, in the decoder, "a+b→c ch" with b the skip
            assert (int(m[1]) + int(m[2] or 0), int(m[3])) == (c_in, c_out), (name, label)
            assert int(m[2] or 0) == skip_ch.get(name, 0), (name, label)  # b is the concatenated skip
        else:
            assert re.search(r"\b(\d+) ch", label)[1] == str(c_out) and c_in == c_out, (name, label)
        assert _band_of(texts[name], bands).split("\n")[0] == f"{res}×{res}", name
    for _, _, label in bands:  # each band names its ResBlocks' width
        res = int(label.split("×")[0])
        widths = sorted({c for n, (_, c, r) in shapes.items() if r == res and isinstance(_module(model, n), ResBlock)})
        assert label.split("\n")[1] == "–".join(map(str, widths)) + " ch"
    drawn_sizes = {lab.split("\n")[0] for *_, lab in bands}
    assert drawn_sizes == {f"{r}×{r}" for *_, r in shapes.values()}


def _module(model, name):
    return getattr(model, name) if "." not in name else getattr(model, name.split(".")[0])[int(name.split(".")[1])]


def test_one_skip_arrow_per_concatenation_from_pusher_to_popper(case, monkeypatch):
    name, model, size, fig = case
    _, _, pairs = _trace(model, size, monkeypatch)
    texts, skips, _ = _drawn(fig)
    assert len(pairs) == {"default": 4, "deep": 9, "conditional": 4}[name]
    assert len(skips) == len(pairs)
    assert {tuple(a.get_gid()[5:].split(">")) for a in skips} == set(pairs)
    for arrow in skips:  # the arrow really starts at the pusher's box and ends at the popper's
        src, dst = arrow.get_gid()[5:].split(">")
        (xa, ya), (xb, yb) = arrow._posA_posB
        assert ya == texts[src].get_position()[1] and yb == texts[dst].get_position()[1]
        assert xa < xb


def test_attention_is_drawn_at_exactly_the_models_attention_sizes(case, monkeypatch):
    _, model, size, fig = case
    _, attention, _ = _trace(model, size, monkeypatch)
    texts, _, bands = _drawn(fig)
    drawn = [t for t in texts.values() if "attention" in t.get_text()]
    assert sorted(int(re.search(r"at (\d+)×\1", t.get_text())[1]) for t in drawn) == attention
    assert all(_band_of(t, bands).startswith(f"{r}×{r}") for t, r in zip(drawn, attention))


def test_labels_and_boxes_do_not_overlap_and_arrows_have_room(case):
    _, _, _, fig = case
    renderer = FigureCanvasAgg(fig).get_renderer()
    boxes = [t.get_window_extent(renderer) for t in fig.findobj(Text) if t.get_text().strip()]
    full = fig.bbox
    for i, a in enumerate(boxes):
        assert full.x0 <= a.x0 and a.x1 <= full.x1 and full.y0 <= a.y0 and a.y1 <= full.y1, a
        for b in boxes[i + 1:]:
            assert not a.overlaps(b), (a, b)
    texts, _, _ = _drawn(fig)
    patches = [p for p in fig.axes[0].patches if (p.get_gid() or "").startswith("box:")]
    extents = [p.get_window_extent(renderer) for p in patches]
    for i, a in enumerate(extents):
        assert not any(a.overlaps(b) for b in extents[i + 1:]), patches[i].get_gid()
    for arrow in fig.findobj(FancyArrowPatch):  # at least ~0.15 inch long, so the head has a shaft
        (xa, ya), (xb, yb) = arrow._posA_posB
        assert ((xb - xa) ** 2 + (yb - ya) ** 2) ** 0.5 >= 0.15, arrow.get_gid()
    labels = {p.get_gid()[4:] for p in patches} | {"badge"}
    for text in fig.findobj(Text):  # no other text runs into a box
        if text.get_text().strip() and text.get_gid() not in labels:
            assert not any(text.get_window_extent(renderer).overlaps(e) for e in extents), text.get_text()
    for patch in patches:  # every block's label fits in its box
        if (patch.get_gid() or "").startswith("box:"):
            inner, outer = texts[patch.get_gid()[4:]].get_window_extent(renderer), patch.get_window_extent(renderer)
            assert outer.x0 < inner.x0 and inner.x1 < outer.x1 and outer.y0 < inner.y0 and inner.y1 < outer.y1


def test_title_names_the_config_and_counts_the_parameters(case):
    name, model, _, fig = case
    title = _drawn(fig)[0]["title"].get_text().replace("\n", " ")
    assert f"{sum(p.numel() for p in model.parameters()):,} parameters" in title
    assert title.startswith("dc.UNet(UNetConfig(")
    if name == "default":
        assert title == "dc.UNet(UNetConfig()): 651,041 parameters"


def test_a_deeper_config_changes_the_labels():
    def sizes(fig):
        return sorted(label.split("\n")[0] for *_, label in _drawn(fig)[2])

    assert sizes(unet_diagram(dc.UNetConfig())) == ["4×4", "8×8"]
    deep = unet_diagram(dc.UNetConfig(channel_mults=(1, 2, 2), num_res_blocks=2), 28)
    assert sizes(deep) == ["14×14", "28×28", "7×7"]
    texts = [t.get_text() for t in deep.findobj(Text)]
    assert sum(t.startswith("ResBlock") for t in texts) == 2 * 3 + 2 + 3 * 3
    assert any("num_res_blocks=2" in t for t in texts)


def test_class_conditioning_adds_the_label_input():
    plain = [t.get_text() for t in unet_diagram(dc.UNetConfig()).findobj(Text)]
    assert not any("class" in t for t in plain)
    texts = _drawn(unet_diagram(dc.UNetConfig(num_classes=10)))[0]
    assert "Embedding(11, 128)" in texts["class_embed"].get_text()  # 10 labels + the null label
    assert "class" in texts["time_note"].get_text()


def test_the_drawing_reads_the_modules_not_the_config():
    model = dc.UNet()
    model.mid[1] = SelfAttention(64, 2, 8)  # the config still says 1 head
    assert any("2 heads" in t.get_text() for t in unet_diagram(model).findobj(Text))
    model.mid[1] = torch.nn.Identity()
    with pytest.raises(TypeError, match="cannot draw mid.1"):
        unet_diagram(model)


def test_draws_on_a_given_figure_and_never_on_pyplot():
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = Figure()
    assert unet_diagram(dc.UNetConfig(), fig=fig) is fig and fig.get_figwidth() == 8
    assert isinstance(unet_diagram(dc.UNetConfig()), matplotlib.figure.Figure)
    assert plt.get_fignums() == before


def test_the_book_style_draws_it_without_warnings(recwarn):
    with matplotlib.rc_context(BOOK_RC):  # constrained layout on: the diagram must turn it off
        fig = unet_diagram(dc.UNetConfig())
        FigureCanvasAgg(fig).draw()
    assert not recwarn.list


def test_bad_arguments_raise():
    with pytest.raises(TypeError, match="UNetConfig or a UNet"):
        unet_diagram({"base_channels": 32})
    with pytest.raises(ValueError, match=r"divisible by 2\*\*\(levels - 1\) = 2"):
        unet_diagram(dc.UNetConfig(), 7)
    with pytest.raises(ValueError, match="= 4 for 3 levels, got 14"):
        unet_diagram(dc.UNetConfig(channel_mults=(1, 2, 2)), 14)
    with pytest.raises(TypeError, match="image_size must be an int"):
        unet_diagram(dc.UNetConfig(), 8.0)
    with pytest.raises(ValueError, match="image_size"):
        unet_diagram(dc.UNetConfig(), 0)
    with pytest.raises(TypeError, match="fig must be"):
        unet_diagram(dc.UNetConfig(), fig="figure")
