using LSVCR.TestServers;

namespace LSVCR.Data.Tests;

public class ReferenceLayoutTests
{
    [Fact]
    public void Reads_items_and_examples_matching_int_and_string_ids_by_string_form()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir);
        var data = ReferenceLayout.Read(dir.Path);
        var cat = data.Catalog;

        Assert.Equal(Fixture.PhotoIds, cat.PhotoIds);
        Assert.Equal(Fixture.CommentIds, cat.CommentIds);
        Assert.Equal("Cats 😺 jump", cat.PhotoTitles[1]);
        Assert.Equal("Ünïcode – title", cat.PhotoTitles[3]);
        Assert.Equal("lol 😂", cat.CommentTexts[2]);
        Assert.Equal([1, 2], cat.CommentsOf(1).ToArray());
        Assert.Equal([3], cat.CommentsOf(2).ToArray());
        Assert.Equal([4, 5], cat.CommentsOf(3).ToArray());

        var train = data[TaskKind.Rec, Split.Train];
        Assert.Equal(["u1", "7"], train.UserIds);
        Assert.Equal([2, 1], train.TargetPhoto);
        Assert.Equal([1], train.PhotoHistoryOf(0).ToArray());
        Assert.Empty(train.PhotoHistoryOf(1).ToArray());
        Assert.Equal((1, 2), train.CommentEntriesOf(1));
        Assert.Equal(3, train.CommentHistoryPhoto[1]);
        Assert.Equal([4], train.CommentsOfEntry(1).ToArray());
        Assert.Equal([1, 2], train.CommentsOfEntry(0).ToArray());

        var test = data[TaskKind.CommRank, Split.Test];
        Assert.Equal(1, test.Count);
        Assert.Equal([5, 4], test.PositivesOf(0).ToArray());
        Assert.Equal([1, 2], test.CommentHistoryPhoto);
        Assert.Equal(0, data[TaskKind.Rec, Split.Test].Count); // file absent = empty split
        Assert.Equal(0, data[TaskKind.CommRank, Split.Val].Count);
    }

    [Fact]
    public void ReadCatalog_ignores_example_files()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir, new() { ["rec.train.json"] = "not json\n" });
        var cat = ReferenceLayout.ReadCatalog(dir.Path);
        Assert.Equal(4, cat.PhotoCount);
        Assert.Equal(6, cat.CommentCount);
        Assert.Throws<DatasetValidationException>(() => ReferenceLayout.Read(dir.Path));
    }

    [Fact]
    public void Import_export_import_is_lossless_and_export_is_byte_stable()
    {
        using var src = new TestDir();
        using var out1 = new TestDir();
        using var out2 = new TestDir();
        Fixture.WriteTo(src);
        var first = ReferenceLayout.Read(src.Path);
        ReferenceLayout.Write(first, out1.Path);
        var second = ReferenceLayout.Read(out1.Path);
        AssertSame(first, second);
        ReferenceLayout.Write(second, out2.Path);
        foreach (var file in Directory.GetFiles(out1.Path))
            Assert.Equal(File.ReadAllBytes(file), File.ReadAllBytes(out2.File(Path.GetFileName(file))));
        Assert.Empty(Directory.GetDirectories(out1.Path)); // staging folder removed
        Assert.Equal(10, Directory.GetFiles(out1.Path).Length); // 2 pickles, 2 item files, 6 split files
    }

    [Fact]
    public void Round_trips_non_numeric_unicode_ids_as_strings()
    {
        string[] photos = [Catalog.PadId, "vidé😀", "007"];
        string[] comments = [Catalog.PadId, "c-1"];
        var catalog = new Catalog(photos, ["", "t😀", "zero-zero-seven"], [0, 0, 1, 1], [1], comments, ["", "wow 🎉"]);
        var b = new ExampleSetBuilder(TaskKind.CommRank, Split.Train);
        b.Add("ü", 1, [2], [(2, (IReadOnlyList<int>)[1])], [1]);
        var data = new LsvcrDataset(catalog, [b.Build()]);
        using var dir = new TestDir();
        ReferenceLayout.Write(data, dir.Path);
        var back = ReferenceLayout.Read(dir.Path);
        AssertSame(data, back);
        // "007" is not a canonical integer, so the list must stay strings or 7 would no longer match "007".
        Assert.Contains("\"007\"", File.ReadAllText(dir.File("comm_rank.train.json")));
    }

    [Fact]
    public void Written_pickles_unpickle_in_python_to_the_id_lists()
    {
        using var src = new TestDir();
        using var dir = new TestDir();
        Fixture.WriteTo(src);
        ReferenceLayout.Write(ReferenceLayout.Read(src.Path), dir.Path);
        var printed = DebianPython.Run($$"""
            import pickle, json
            photos = pickle.load(open({{Py(dir.File("all_photos.pkl"))}}, 'rb'))
            comments = pickle.load(open({{Py(dir.File("all_comments.pkl"))}}, 'rb'))
            rec = [json.loads(l) for l in open({{Py(dir.File("rec.train.json"))}}, encoding='utf-8')]
            print(repr(photos), repr(comments), photos.index(rec[0]['target_photo']))
            """);
        Assert.Equal("['[PAD]', 101, 102, 103] ['[PAD]', 201, 202, 203, 204, 205] 2", printed);
    }

    [Fact]
    public void Reads_files_with_bom_and_crlf_line_ends()
    {
        using var plain = new TestDir();
        using var windows = new TestDir();
        Fixture.WriteTo(plain);
        Fixture.WriteTo(windows, Fixture.Files.ToDictionary(f => f.Key, f => (string?)("\uFEFF" + f.Value.ReplaceLineEndings("\r\n"))));
        AssertSame(ReferenceLayout.Read(plain.Path), ReferenceLayout.Read(windows.Path));
    }

    [Fact]
    public void Failed_write_leaves_the_previous_dataset_untouched()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir);
        var before = Directory.GetFiles(dir.Path).ToDictionary(f => f, File.ReadAllBytes);
        // An example set whose offsets point past its history: writing fails after the item files are staged.
        var broken = new ExampleSet
        {
            Task = TaskKind.Rec, Split = Split.Test, UserIds = ["u"], TargetPhoto = [1], PhotoHistoryOffsets = [0, 5], PhotoHistory = [],
            CommentHistoryOffsets = [0, 0], CommentHistoryPhoto = [], CommentEntryOffsets = [0], CommentHistoryComments = [],
            PositiveOffsets = [0, 0], PositiveComments = [],
        };
        var catalog = ReferenceLayout.ReadCatalog(dir.Path);
        Assert.ThrowsAny<ArgumentException>(() => ReferenceLayout.Write(new LsvcrDataset(catalog, [broken]), dir.Path));
        Assert.Empty(Directory.GetDirectories(dir.Path));
        foreach (var (file, bytes) in before) Assert.Equal(bytes, File.ReadAllBytes(file));
    }

    [Fact]
    public void Reads_id_lists_pickled_by_python_with_its_default_protocol()
    {
        using var dir = new TestDir();
        var written = DebianPython.Run($"""
            import pickle
            pickle.dump(['[PAD]', 5, 'abc', 12345678901234, 'é😀'], open({Py(dir.File("ids.pkl"))}, 'wb'), protocol=pickle.HIGHEST_PROTOCOL)
            print('ok')
            """);
        var problems = new List<DatasetProblem>();
        Assert.Equal([Catalog.PadId, "5", "abc", "12345678901234", "é😀"], IdLists.Read(dir.File("ids.pkl"), "ids.pkl", problems)!);
        Assert.Empty(problems);
    }

    private static string Py(string path) => "r'" + path + "'";

    internal static void AssertSame(LsvcrDataset a, LsvcrDataset b)
    {
        Assert.Equal(a.Catalog.PhotoIds, b.Catalog.PhotoIds);
        Assert.Equal(a.Catalog.PhotoTitles, b.Catalog.PhotoTitles);
        Assert.Equal(a.Catalog.PhotoCommentOffsets, b.Catalog.PhotoCommentOffsets);
        Assert.Equal(a.Catalog.PhotoComments, b.Catalog.PhotoComments);
        Assert.Equal(a.Catalog.CommentIds, b.Catalog.CommentIds);
        Assert.Equal(a.Catalog.CommentTexts, b.Catalog.CommentTexts);
        foreach (var (x, y) in a.Sets.Zip(b.Sets))
        {
            Assert.Equal((x.Task, x.Split), (y.Task, y.Split));
            Assert.Equal(x.UserIds, y.UserIds);
            Assert.Equal(x.TargetPhoto, y.TargetPhoto);
            Assert.Equal(x.PhotoHistoryOffsets, y.PhotoHistoryOffsets);
            Assert.Equal(x.PhotoHistory, y.PhotoHistory);
            Assert.Equal(x.CommentHistoryOffsets, y.CommentHistoryOffsets);
            Assert.Equal(x.CommentHistoryPhoto, y.CommentHistoryPhoto);
            Assert.Equal(x.CommentEntryOffsets, y.CommentEntryOffsets);
            Assert.Equal(x.CommentHistoryComments, y.CommentHistoryComments);
            Assert.Equal(x.PositiveOffsets, y.PositiveOffsets);
            Assert.Equal(x.PositiveComments, y.PositiveComments);
        }
    }
}

public class DatasetStatsTests
{
    [Fact]
    public void Counts_users_items_interactions_and_history_lengths_of_the_fixture()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir);
        var stats = DatasetStats.Compute(ReferenceLayout.Read(dir.Path));
        Assert.Equal((2, 3, 5), (stats.Users, stats.Videos, stats.Comments));
        // u1 liked 101-103 and touched comments 201-205; user 7 liked 101 and touched 204.
        Assert.Equal((4L, 6L, 10L), (stats.LikedVideos, stats.CommentInteractions, stats.Interactions));
        Assert.Equal(14, stats.HistoryEntries);
        Assert.Equal(new Distribution(3, 1, 2, 2, 2, 5 / 3.0), stats.CommentsPerVideo);
        var recTrain = stats.Sets.Single(s => s is { Task: TaskKind.Rec, Split: Split.Train });
        Assert.Equal((2, 2), (recTrain.Examples, recTrain.Users));
        Assert.Equal(new Distribution(2, 0, 0.5, 1, 1, 0.5), recTrain.VideoHistory);
        Assert.Equal(new Distribution(2, 1, 1.5, 2, 2, 1.5), recTrain.CommentHistoryComments);
        var crTest = stats.Sets.Single(s => s is { Task: TaskKind.CommRank, Split: Split.Test });
        Assert.Equal(2, crTest.Positives.Mean);
        Assert.Equal(6, stats.Sets.Count);
    }

    [Fact]
    public void Distribution_uses_nearest_rank_percentiles()
    {
        var d = Distribution.Of([5, 1, 9, 3, 7, 2, 8, 4, 6, 10]);
        Assert.Equal(new Distribution(10, 1, 5.5, 9, 10, 5.5), d);
        Assert.Equal(new Distribution(0, 0, 0, 0, 0, 0), Distribution.Of([]));
    }
}
