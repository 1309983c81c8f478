"""Dataset layouts: class folders, ids, extensions, polarity and the errors for wrong layouts."""
import pytest

from pipeline.datasets import folder_definition, load_definition, read_polarity_file, scan


def touch(root, *names):
    for n in names:
        p = root / n
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(b"x")


def test_shipped_definitions_have_polarity():
    e6 = load_definition("e6")
    assert e6.classes == ["anger", "disgust", "fear", "joy", "sadness", "surprise"]
    assert e6.polarity == [0, 0, 0, 1, 0, 1]
    ve8 = load_definition("ve8")
    assert ve8.classes[0] == "Anger" and len(ve8.classes) == 8
    assert ve8.polarity == [0, 1, 0, 0, 1, 0, 1, 1]
    with pytest.raises(ValueError, match="unknown dataset 'nope'.*e6"):
        load_definition("nope")


def test_scan_matches_class_folders_ignoring_case(tmp_path):
    # VE-8 has the same name in two class folders: ids are class/name
    touch(tmp_path, "anger/b.avi", "anger/a.mp4", "Disgust/same.webm", "fear/same.mkv",
          "joy/c.3gp", "joy/notes.txt", "joy/.DS_Store", "sadness/d.MOV")
    e6 = load_definition("e6")
    with pytest.warns(UserWarning) as w:
        videos = scan(tmp_path, e6)
    assert [v.id for v in videos] == ["anger/a", "anger/b", "disgust/same", "fear/same",
                                     "joy/c", "sadness/d"]
    assert [v.label for v in videos] == [0, 0, 1, 2, 3, 4]
    assert videos[2].path == tmp_path / "Disgust" / "same.webm"
    messages = " ".join(str(x.message) for x in w)
    assert "joy/notes.txt" in messages and "DS_Store" not in messages   # skipped with a warning
    assert "surprise" in messages                                       # missing class folder


@pytest.mark.filterwarnings("ignore:.*no folder for classes")
@pytest.mark.filterwarnings("ignore:skipped")
@pytest.mark.parametrize("setup, match", [
    (lambda r: None, "is empty; expected layout: ROOT/<class>/"),
    (lambda r: touch(r, "a.mp4"), "no class folders in .*expected layout.*anger, disgust"),
    (lambda r: touch(r, "anger/a.mp4", "happy/b.mp4"), "happy is not a class of dataset e6.*"
                                                         "expected layout"),
    (lambda r: touch(r, "anger/a.mp4", "Anger/b.mp4"), "two folders for class anger"),
    (lambda r: touch(r, "anger/a.mp4", "anger/a.avi"), "share the id anger/a"),
    (lambda r: touch(r, "anger/a.txt"), "no video files under"),
])
def test_wrong_layouts_name_the_expected_layout(tmp_path, setup, match):
    setup(tmp_path)
    with pytest.raises(ValueError, match=match):
        scan(tmp_path, load_definition("e6"))


def test_missing_root(tmp_path):
    with pytest.raises(ValueError, match="is not a directory"):
        scan(tmp_path / "nowhere", load_definition("ve8"))


def test_folder_layout_and_polarity_files(tmp_path):
    touch(tmp_path / "root", "calm/a.mp4", "angry/b.mp4", "happy/c.flv")
    d = folder_definition(tmp_path / "root")
    assert d.classes == ["angry", "calm", "happy"] and d.polarity == [1, 1, 1]
    assert [v.id for v in scan(tmp_path / "root", d)] == ["angry/b", "calm/a", "happy/c"]

    text = tmp_path / "pol.txt"
    text.write_text("# class polarity\nAngry negative\ncalm 1\nhappy positive\n")
    assert folder_definition(tmp_path / "root", text).polarity == [0, 1, 1]
    js = tmp_path / "pol.json"
    js.write_text('{"negative": ["angry", "calm"]}')
    assert folder_definition(tmp_path / "root", js).polarity == [0, 0, 1]

    text.write_text("angry negative\n")
    with pytest.raises(ValueError, match=r"no polarity for classes \['calm', 'happy'\]"):
        read_polarity_file(text, d.classes)
    text.write_text("angry negative\ncalm positive\nhappy positive\nsad negative\n")
    with pytest.raises(ValueError, match="'sad' is not a class folder"):
        read_polarity_file(text, d.classes)
    text.write_text("angry bad\ncalm positive\nhappy positive\n")
    with pytest.raises(ValueError, match="must be positive/negative"):
        read_polarity_file(text, d.classes)


def test_symlinks_that_lead_nowhere_are_named_as_such(tmp_path):
    touch(tmp_path, "anger/a.mp4")
    (tmp_path / "anger" / "loop.mp4").symlink_to(tmp_path / "anger" / "loop2.mp4")
    (tmp_path / "anger" / "loop2.mp4").symlink_to(tmp_path / "anger" / "loop.mp4")
    (tmp_path / "anger" / "gone.mp4").symlink_to(tmp_path / "nowhere.mp4")
    with pytest.warns(UserWarning) as w:
        videos = scan(tmp_path, load_definition("e6"))
    assert [v.id for v in videos] == ["anger/a"]
    messages = " ".join(str(x.message) for x in w)
    assert "anger/loop.mp4 (symlink loop)" in messages
    assert "anger/gone.mp4 (symlink to a missing file)" in messages
    assert "not video files" not in messages
    from trainer.predict import PredictError, find_videos
    with pytest.raises(PredictError, match="symlink loop: .*loop.mp4"):
        find_videos([tmp_path / "anger" / "loop.mp4"])
