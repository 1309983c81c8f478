"""Snippet decoding: the frames that come out are the frames the plan asked for, at the right size."""
import dataclasses
import subprocess

import ffmpeg
import numpy as np
import pytest

from pipeline import ffmpeg_bin
from pipeline.errors import VideoError
from pipeline.extract import extract_video
from pipeline.params import PreprocessParams
from pipeline.probe import FrameTable, frame_table, probe
from pipeline import video
from pipeline.video import (_kept_packets, _single_pass, _single_pass_ranges, _window_counts, decode_all,
                            decode_at, output_size, plan_snippets, reference_frames, seek_times)
from tests import videos

# small settings keep the tests fast: S*t*k = 32 frames, videos over 64 frames use seeking
P = PreprocessParams(segments=4, snippets=2, frames=4, short_side=64, max_long_side=96)


@pytest.fixture(scope="module")
def vids(tmp_path_factory):
    d = tmp_path_factory.mktemp("videos")
    v = {}
    v["long"] = videos.write_video(d / "long.mp4", videos.counter_frames(250, 160, 120), gop=25)
    v["medium"] = videos.write_video(d / "medium.mp4", videos.counter_frames(60, 160, 120))
    v["short"] = videos.write_video(d / "short.mp4", videos.counter_frames(5, 160, 120))
    v["portrait"] = videos.write_video(d / "portrait.mp4", videos.counter_frames(40, 90, 160))
    v["odd"] = videos.write_video(d / "odd.mp4", videos.counter_frames(40, 161, 97), pix_fmt="yuv444p")
    marked = videos.counter_frames(40, 160, 90)
    marked[:, :30, :30] = (255, 0, 0)  # a red corner: where it lands tells the rotation direction
    v["landscape"] = videos.write_video(d / "landscape.mp4", marked)
    v["rotated"] = videos.rotate(v["landscape"], d / "rotated.mp4", 90)
    v["anamorphic"] = videos.write_video(d / "anamorphic.mp4", videos.counter_frames(40, 240, 180),
                                         aspect="16:9")
    v["vfr"] = videos.write_video(d / "vfr.mp4", videos.counter_frames(400, 160, 120),
                                  select="lt(n,60)+gte(n,60)*not(mod(n,5))")
    colours = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0)]
    v["colours"] = videos.write_video(d / "colours.mp4", videos.colour_frames(colours, 50, 128, 96), gop=50)
    v["colours_list"] = colours
    return v


def counters(frames):
    return np.vectorize(lambda *i: videos.read_counter(frames[i]), signature="(),(),()->()")(
        *np.indices(frames.shape[:3]))


@pytest.mark.parametrize("name, n", [("long", 250), ("medium", 60)])
def test_frames_are_the_planned_ones(vids, name, n):
    ex = extract_video(vids[name], P)
    assert ex.frames.shape == (2, 4, 4, 64, 85, 3) and ex.frames.dtype == np.uint8
    # long videos are decoded by seeking, with snippets snapped to keyframes; short ones whole
    keyframes = frame_table(probe(vids[name])).keyframes if n > 64 else None
    starts = plan_snippets(n, P, keyframes)
    assert np.array_equal(counters(ex.frames), starts[..., None] + np.arange(4))
    assert np.allclose(ex.info["snippet_starts"], starts / 25)
    assert ex.info["n_frames"] == n and ex.info["fps"] == 25 and ex.info["notes"] == []


def test_snippets_snap_to_keyframes_inside_their_slot():
    # 400 frames, 8 slots of 50 (2 per segment); centred starts 23, 73, 123, ...; keyframes
    # every 30 frames: each snippet moves to the nearest keyframe from which it fits its slot
    assert plan_snippets(400, P).tolist() == [[23, 123, 223, 323], [73, 173, 273, 373]]
    starts = plan_snippets(400, P, np.arange(0, 400, 30))
    assert starts.tolist() == [[30, 120, 210, 330], [60, 180, 270, 360]]
    # slots without a fitting keyframe keep their centred start
    assert plan_snippets(400, P, [200, 348]).tolist() == [[23, 123, 200, 323], [73, 173, 273, 373]]


@pytest.mark.parametrize("suffix, fps", [(".mp4", "30000/1001"), (".mkv", "25"), (".flv", "30000/1001"),
                                         (".ts", "30000/1001"), (".avi", "25")])
def test_exact_frames_in_other_containers_and_rates(tmp_path, suffix, fps):
    v = videos.write_video(tmp_path / f"v{suffix}", videos.counter_frames(300, 160, 120), fps=fps, gop=40)
    p, table = probe(v), frame_table(probe(v))
    assert len(table.times) == 300 and len(table.keyframes) >= 7
    ex = extract_video(v, P)
    seekable = suffix not in (".ts", ".avi")  # those are decoded whole: exact, but no seeking
    starts = plan_snippets(300, P, table.keyframes if seekable else None)
    assert np.array_equal(counters(ex.frames), starts[..., None] + np.arange(4))
    if not seekable:
        return
    # and frames that are not keyframes, sought half-way after the frame before them
    odd = np.array([1, 57, 133, 299 - 4])
    parts = decode_at(p, P, seek_times(table.times, odd, table.keyframes))
    assert [videos.read_counter(x[0]) for x in parts] == odd.tolist()


def test_plan_is_centred_and_evenly_spaced():
    p1 = P.replace(snippets=1, segments=10, frames=16)
    assert plan_snippets(1600, p1).tolist() == [[80 + 160 * i - 8 for i in range(10)]]
    s = plan_snippets(800, P)  # segments of 200 frames, two snippets at 1/4 and 3/4 of each
    assert s[:, 0].tolist() == [48, 148] and s[:, 1].tolist() == [248, 348]
    assert plan_snippets(10, P).max() <= 6 and plan_snippets(3, P).max() == 0


def test_seeking_decodes_the_same_pixels_as_a_full_decode(vids):
    p = probe(vids["long"])
    table = frame_table(p)
    starts = np.array([0, 37, 100, 230])  # 0 and 100 are keyframes (-g 25)
    assert set(table.keyframes) >= {0, 100}
    parts = decode_at(p, P, seek_times(table.times, starts, table.keyframes))
    full = decode_all(p, P)
    assert len(full) == 250
    for s, part in zip(starts, parts):
        assert part.shape == (4, 64, 85, 3)
        assert np.abs(part.astype(int) - full[s:s + 4]).max() <= 1


def test_colours_per_segment_in_rgb_order(vids):
    ex = extract_video(vids["colours"], P.replace(snippets=1))
    means = ex.frames[0].reshape(4, -1, 3).mean(1)
    assert np.abs(means - np.array(vids["colours_list"])).max() < 12


@pytest.mark.parametrize("name, shape, display", [
    ("portrait", (96, 64), (90, 160)),  # 114 high after scaling, centre-cropped to 96
    ("odd", (64, 96), (161, 97)),  # 106 wide after scaling, centre-cropped to 96
    ("landscape", (64, 96), (160, 90)),  # 114 wide, cropped
    ("rotated", (96, 64), (90, 160)),
    ("anamorphic", (64, 96), (320, 180)),  # 240x180 pixels shown as 16:9
])
def test_output_sizes(vids, name, shape, display):
    ex = extract_video(vids[name], P)
    assert ex.frames.shape[-3:-1] == shape
    assert (ex.info["width"], ex.info["height"]) == display
    assert min(shape) == P.short_side and max(shape) <= P.max_long_side
    # content survives every rescale and crop: the counter still reads
    if name != "rotated":
        assert counters(ex.frames)[0, 0, 0] == plan_snippets(40, P)[0, 0]


def test_rotation_follows_the_display_matrix(vids):
    ex = extract_video(vids["rotated"], P)
    assert ex.info["rotation"] == 90
    # 90 degrees counter-clockwise: the red top-left corner of the stored picture ends bottom-left
    f = ex.frames[0, 0, 0].astype(int)
    assert f[-4, 4, 0] > 200 and f[-4, 4, 1] < 60
    assert f[2, 2, 0] < 60


def test_short_video_loops(vids):
    ex = extract_video(vids["short"], P.replace(frames=8))
    c = counters(ex.frames)
    assert ex.frames.shape[:3] == (2, 4, 8)
    assert np.array_equal(c, (np.arange(8) % 5) * np.ones((2, 4, 1), int))
    assert any("short video" in n for n in ex.info["notes"])
    # 5 frames for 4 segments: all of them hold the same frames, and the index says so
    assert (ex.frames == ex.frames[:, :1]).all()
    assert "every one of the 4 segments holds the same frames (video of 5 frames)" in ex.info["notes"]
    assert ex.info["n_frames"] == 5


def test_variable_frame_rate(vids):
    kept = [i for i in range(400) if i < 60 or i % 5 == 0]  # 60 frames at 25 fps, then 5 fps
    ex = extract_video(vids["vfr"], P)
    c = counters(ex.frames)
    assert ex.frames.shape == (2, 4, 4, 64, 85, 3)
    for snippet in c.reshape(-1, 4):
        i = kept.index(snippet[0])  # k successive decoded frames, no resampling
        assert snippet.tolist() == kept[i:i + 4]


def test_output_size_rule():
    assert output_size(640, 360, PreprocessParams()) == (199, 112, 199, 112)
    assert output_size(1920, 800, PreprocessParams()) == (269, 112, 200, 112)
    assert output_size(360, 640, PreprocessParams()) == (112, 199, 112, 199)
    assert output_size(50, 50, PreprocessParams()) == (112, 112, 112, 112)


@pytest.mark.parametrize("make, reason", [
    (lambda d: videos.zero_byte(d / "zero.mp4"), "zero-byte file"),
    (lambda d: videos.not_a_video(d / "text.mp4"), "not a video file"),
    (lambda d: videos.audio_only(d / "sound.wav"), "no video stream"),
    (lambda d: d / "missing.mp4", "file not found"),
])
def test_unusable_files_raise(tmp_path, make, reason):
    with pytest.raises(VideoError) as e:
        extract_video(make(tmp_path), P)
    assert e.value.reason.startswith(reason)


@pytest.mark.parametrize("faststart", [False, True])
def test_truncated_files_raise(tmp_path, faststart):
    src = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(250, 160, 120), gop=25,
                             pcm=videos.tone(440, 10), faststart=faststart)
    cut = videos.truncate(src, tmp_path / "cut.mp4", 0.6)
    with pytest.raises(VideoError) as e:
        extract_video(cut, P)
    assert e.value.reason.startswith("truncated file")
    assert e.value.log_tail  # ffmpeg's own words travel with the error


def test_sound_longer_than_pictures(tmp_path):
    # 10 s of pictures, 12 s of sound: the header says 12 s, the packet list says 250 frames
    v = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(250, 160, 120), gop=25,
                           pcm=videos.tone(440, 12.0))
    ex = extract_video(v, P)
    assert ex.info["duration"] == pytest.approx(12.0, abs=0.1) and ex.info["n_frames"] == 250
    starts = plan_snippets(250, P, frame_table(probe(v)).keyframes)
    assert np.array_equal(counters(ex.frames), starts[..., None] + np.arange(4))
    assert ex.info["notes"] == [] and ex.mfcc.shape[0] == pytest.approx(1200, abs=5)


def _bframes(src, dst):
    """Re-encode with B-frames (decoding order differs from display order), keyframe every 25."""
    ffmpeg_bin.run(ffmpeg.input(str(src)).output(str(dst), vcodec="libx264", preset="medium", bf=3,
                                                 g=25, qp=4, threads=1))
    return dst


@pytest.mark.parametrize("bframes", [False, True])
def test_single_pass_decodes_the_same_pixels_as_seeking(vids, tmp_path, bframes):
    v = _bframes(vids["long"], tmp_path / "b.mp4") if bframes else vids["long"]
    p = probe(v, packets=True)
    table = frame_table(p)
    assert bframes == (table.packets.tolist() != list(range(250)))
    k = P.frames
    # keyframes (snapped) and other frames (decoded from the keyframe before them)
    starts = np.array([0, 25, 37, 100, 163, 230, 250 - k])
    ranges = _single_pass_ranges(table, starts, k)
    assert ranges is not None
    seeking = decode_at(p, P, seek_times(table.times, starts, table.keyframes))
    # one output for all snippets (frames placed by showinfo's timestamps) and one per snippet;
    # snippets out of time order, as plan_snippets lays them out
    mixed = starts[[3, 0, 6, 1, 4, 2, 5]]
    for one_output in (True, False):
        out, counts = _single_pass(p, P, table, mixed, ranges, one_output=one_output)
        assert counts.tolist() == [k] * len(starts)
        assert np.array_equal(counters(out[None])[0], mixed[:, None] + np.arange(k))
        assert all(np.array_equal(out[i], seeking[j]) for i, j in enumerate([3, 0, 6, 1, 4, 2, 5]))
    # B-frames that nothing is predicted from (x264's b-pyramid leaves some) need no decoding
    # unless they are snippet frames: the decoder is given fewer packets, the pixels stay the same
    reference = reference_frames(p, table)
    assert reference[table.keyframes].all() and reference.all() != bframes
    kept = _kept_packets(table, starts, k, ranges, reference)
    assert np.isin(table.packets[(starts[:, None] + np.arange(k)).ravel()], kept).all()
    assert (len(kept) < len(_kept_packets(table, starts, k, ranges, None))) == bframes
    out, counts = _single_pass(p, P, table, starts, ranges, reference=reference)
    assert counts.tolist() == [k] * len(starts) and all(map(np.array_equal, out, seeking))
    assert reference_frames(dataclasses.replace(p, codec="hevc"), table) is None  # H.264 only
    # extract_video takes this route for long videos: the planned frames
    ex = extract_video(v, P)
    planned = plan_snippets(250, P, table.keyframes)
    assert np.array_equal(counters(ex.frames), planned[..., None] + np.arange(k))


def _damaged(src, dst, packet):
    """A copy of src whose packet number `packet` has every other byte garbled: that frame does
    not decode, the packet list still holds it."""
    ffmpeg_bin.run(ffmpeg.input(str(src)).output(str(dst), c="copy", **{"bsf:v": f"noise=amount=eq(n\\,{packet})*2"}))
    return dst


def test_single_pass_counts_what_damaged_data_gives_and_falls_back(vids, tmp_path, monkeypatch):
    clean = probe(vids["long"], packets=True)
    planned = plan_snippets(250, P, frame_table(clean).keyframes)
    hit = int(planned[0, 1]) + 2  # a frame inside the second snippet
    v = _damaged(vids["long"], tmp_path / "damaged.mp4", hit)
    p = probe(v, packets=True)
    table = frame_table(p)
    assert len(table.times) == 250  # listed, but it will not decode
    starts = planned.ravel()
    ranges = _single_pass_ranges(table, starts, P.frames)
    for one_output in (True, False):
        _, counts = _single_pass(p, P, table, starts, ranges, one_output=one_output)
        assert counts.tolist() == [4 if i != 1 else 3 for i in range(len(starts))]
    # extract_video: the seeking route's frames instead (k successive decoded frames: the damaged
    # snippet goes on one frame further, its frames after the loss decoded from a wrong reference)
    ex = extract_video(v, P)
    seeking = decode_at(p, P, seek_times(table.times, starts, table.keyframes))
    assert np.array_equal(ex.frames.reshape(-1, 4, 64, 85, 3), np.stack(seeking))
    c, want = counters(ex.frames), planned[..., None] + np.arange(4)
    assert c[0, 1, :2].tolist() == want[0, 1, :2].tolist()
    c[0, 1] = want[0, 1]
    assert np.array_equal(c, want)
    # ffmpeg builds whose showinfo lacks checksum=0 take the output-per-snippet graph: same frames
    monkeypatch.setattr(video, "_showinfo_takes_checksum", lambda exe: False)
    good = extract_video(vids["long"], P)
    assert np.array_equal(counters(good.frames), want)


def test_single_pass_with_more_than_100_snippets(vids):
    # one time window and packet range per snippet: ffmpeg refuses a flat sum of 100 terms
    p = probe(vids["long"], packets=True)
    table = frame_table(p)
    starts = np.arange(0, 250, 2)  # 125 snippets of one frame
    ranges = _single_pass_ranges(table, starts, 1)
    out, counts = _single_pass(p, P.replace(frames=1), table, starts, ranges)
    assert counts.tolist() == [1] * 125
    assert np.array_equal(out[:, 0], decode_all(p, P)[starts])


def test_window_counts_trust_only_a_complete_ordered_log():
    lo, hi, order = np.array([0.98, -1.0]), np.array([1.06, 0.06]), np.array([1, 0])

    def log(pts, tb="1/100"):
        lines = [f"[Parsed_showinfo_3 @ 0x55d0] config in time_base: {tb}, frame_rate: 25/1"] if tb else []
        lines += [f"[Parsed_showinfo_3 @ 0x55d0] n:{i:4d} pts:{x:7d} pts_time:{x / 100:<7g} duration: 4"
                  for i, x in enumerate(pts)]
        return "\n".join(["frame=  12 fps=0.0", *lines, "[out#0/rawvideo @ 0x1] video:1KiB"])

    assert _window_counts(log([0, 4, 100, 104]), 4, lo, hi, order, 2).tolist() == [2, 2]
    assert _window_counts(log([0, 100, 104]), 3, lo, hi, order, 2).tolist() == [2, 1]
    assert _window_counts(log([0, 4, 8, 100]), 4, lo, hi, order, 2).tolist() == [1, 2]  # 8: no window
    assert _window_counts(log([100, 104, 0, 4]), 4, lo, hi, order, 2).tolist() == [0, 0]  # out of order
    assert _window_counts(log([0, 4, 100, 104]), 5, lo, hi, order, 2).tolist() == [0, 0]  # a frame not logged
    assert _window_counts(log([0, 4, 100, 104], tb=None), 4, lo, hi, order, 2).tolist() == [0, 0]


def test_open_gop_takes_the_seeking_route():
    times = np.arange(8) / 25
    closed = FrameTable(times=times, keyframes=np.array([0, 4]), packets=np.arange(8))
    assert _single_pass_ranges(closed, np.array([1, 4]), 2) == [(0, 2), (4, 5)]
    # frame 3 is decoded after keyframe 4 (packet 3) but shown before it: it refers to packets
    # the single pass would leave out
    opened = FrameTable(times=times, keyframes=np.array([0, 4]),
                        packets=np.array([0, 1, 2, 4, 3, 5, 6, 7]))
    assert _single_pass_ranges(opened, np.array([4]), 2) is None
    assert _single_pass_ranges(opened, np.array([0]), 2) == [(0, 1)]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_files_that_start_late_give_the_planned_frames(vids, tmp_path, suffix):
    # seeks count from the file's start time, which the stream probing skipped for mp4/mkv
    # inputs would not know
    v = tmp_path / f"late{suffix}"
    ffmpeg_bin.run(ffmpeg.input(str(vids["long"])).output(str(v), c="copy", output_ts_offset=1.5))
    p = probe(v)
    assert p.start == pytest.approx(1.5, abs=0.1) and p.start != 0
    table = frame_table(p)
    starts = np.array([0, 37, 100, 230])
    parts = decode_at(p, P, seek_times(table.times, starts, table.keyframes))
    assert [counters(x[None, None])[0, 0].tolist() for x in parts] == [list(range(s, s + 4)) for s in starts]
    ex = extract_video(v, P)
    planned = plan_snippets(250, P, table.keyframes)
    assert np.array_equal(counters(ex.frames), planned[..., None] + np.arange(4))


def test_one_process_per_snippet_gives_the_same_frames(vids):
    p = probe(vids["long"])
    table = frame_table(p)
    seeks = seek_times(table.times, np.array([0, 37, 100, 230]), table.keyframes)
    one, many = decode_at(p, P, seeks), decode_at(p, P, seeks, one_process=False)
    assert all(np.array_equal(a, b) for a, b in zip(one, many))


def test_matroska_that_starts_late_keeps_its_own_duration(tmp_path):
    """An mkv whose timestamps start at 5 s: its header gives the end time (17 s for a 12 s
    clip); the frames' span is stored, and the audio windows are placed against it."""
    import subprocess

    from pipeline import ffmpeg_bin
    from pipeline.extract import extract_video
    from pipeline.params import PreprocessParams
    src = videos.write_video(tmp_path / "v.mp4", videos.counter_frames(100, 64, 64), fps=25)
    late = tmp_path / "late.mkv"
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-y", "-i", str(src), "-c", "copy",
                    "-output_ts_offset", "5", str(late)], check=True)
    ex = extract_video(late, PreprocessParams(segments=2, frames=4, short_side=32, max_long_side=32))
    assert ex.info["duration"] == pytest.approx(4.0, abs=0.05)
    assert any("end time" in n for n in ex.info["notes"])



def direct_rgb24(path, p, flags="area+full_chroma_int", size=None, fmt="rgb24", dtype=np.uint8):
    """Every frame scaled (and cropped) straight to `fmt` by ffmpeg's command line; size (w, h)
    without crop instead of the pipeline's geometry."""
    sw, sh, ow, oh = output_size(p.width, p.height, P)
    chain = f"scale={sw}:{sh}:flags={flags}" + (
        f",crop={ow}:{oh}:{(sw - ow) // 2}:{(sh - oh) // 2}" if (ow, oh) != (sw, sh) else "")
    if size is not None:
        (ow, oh), chain = size, f"scale={size[0]}:{size[1]}:flags={flags}"
    raw = subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-threads", "1", "-i", str(path),
                          "-map", f"0:v:{p.video_stream}", "-vf", chain, "-fps_mode", "passthrough",
                          "-f", "rawvideo", "-pix_fmt", fmt, "pipe:"],
                         capture_output=True, check=True).stdout
    return np.frombuffer(raw, dtype).reshape(-1, *((3, oh, ow) if fmt.startswith("gbrp") else (oh, ow, 3)))


@pytest.mark.parametrize("name", ["medium", "odd", "landscape", "rotated", "anamorphic", "colours"])
def test_frames_are_a_full_chroma_rgb24_scale(vids, name):
    """The scale writes planar RGB (pipeline/video.py: PLANAR), packed afterwards: every pixel
    a direct rgb24 scale with full chroma interpolation gives (crop, rotation, pixel aspect)."""
    ours, expected = decode_all(probe(vids[name]), P), direct_rgb24(vids[name], probe(vids[name]))
    assert ours.shape == expected.shape and np.array_equal(ours, expected)


@pytest.mark.parametrize("pix_fmt, tags", [("yuv420p", ["-colorspace", "bt709"]),
                                           ("yuv420p10le", []), ("yuvj420p", [])])
def test_full_chroma_frames_from_tagged_and_deep_sources(tmp_path, pix_fmt, tags):
    src = tmp_path / "src.mp4"
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=s=160x90:r=25:d=1", "-c:v", "libx264", "-preset", "ultrafast",
                    "-pix_fmt", pix_fmt, *tags, "-y", str(src)], capture_output=True, check=True)
    ours, expected = decode_all(probe(src), P), direct_rgb24(src, probe(src))
    assert len(ours) == 25 and np.array_equal(ours, expected)


def test_colour_edges_keep_their_chroma_at_even_widths(tmp_path):
    """A packed rgb24 scale to an even width halves the chroma's horizontal resolution (swscale
    interpolates it only for odd widths); the pipeline's frames keep it: close to a 16-bit
    full-chroma scale of the same source, where the packed scale is far off."""
    from pipeline.codec import psnr
    src = tmp_path / "bars.mp4"
    subprocess.run([ffmpeg_bin.ffmpeg_exe(), "-v", "error", "-f", "lavfi", "-i",
                    "testsrc2=s=256x192:r=25:d=0.4", "-c:v", "libx264", "-preset", "ultrafast",
                    "-qp", "0", "-pix_fmt", "yuv420p", "-y", str(src)], capture_output=True, check=True)
    p = probe(src)
    ours = decode_all(p, P.replace(short_side=96, max_long_side=128))   # 128x96: an even width
    assert ours.shape[1:3] == (96, 128)
    ref16 = direct_rgb24(src, p, "area+full_chroma_int+accurate_rnd", (128, 96), "gbrp16le", np.uint16)
    ref = np.round(ref16 / 257).astype(np.uint8)[:, [2, 0, 1]].transpose(0, 2, 3, 1)  # g, b, r planes
    packed = direct_rgb24(src, p, "area", (128, 96))
    assert psnr(ref, ours) > 45 and psnr(ref, packed) < 35, (psnr(ref, ours), psnr(ref, packed))
