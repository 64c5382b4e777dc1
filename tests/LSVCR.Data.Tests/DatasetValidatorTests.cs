namespace LSVCR.Data.Tests;

public class DatasetValidatorTests
{
    private const string Ok = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [102], "comment_inter_his": [[], []]}""";

    private static IReadOnlyList<DatasetProblem> Validate(Dictionary<string, string?> replace, Action<TestDir>? tweak = null)
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir, replace);
        tweak?.Invoke(dir);
        var problems = DatasetValidator.Validate(dir.Path);
        // Read must throw the same problems, and only as a DatasetValidationException.
        var thrown = Assert.Throws<DatasetValidationException>(() => ReferenceLayout.Read(dir.Path));
        Assert.Equal(problems, thrown.Problems);
        return problems;
    }

    private static DatasetProblem Single(IReadOnlyList<DatasetProblem> problems, string file, int? line, string fragment)
    {
        var p = Assert.Single(problems);
        Assert.Equal(file, p.File);
        Assert.Equal(line, p.Line);
        Assert.Contains(fragment, p.Message);
        return p;
    }

    [Fact]
    public void Valid_fixture_has_no_problems()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir);
        Assert.Empty(DatasetValidator.Validate(dir.Path));
    }

    [Fact]
    public void Reports_malformed_json_line_and_keeps_going()
    {
        var problems = Validate(new() { ["rec.test.json"] = Ok + "\n{\"user_id\": \"u9\", \n" + Ok + "\n\n{bad}\n" });
        Assert.Equal(["rec.test.json:2", "rec.test.json:5"], problems.Select(p => $"{p.File}:{p.Line}"));
        Assert.All(problems, p => Assert.Contains("malformed JSON", p.Message));
    }

    [Fact]
    public void Reports_missing_fields_and_wrong_types()
    {
        var problems = Validate(new()
        {
            ["rec.test.json"] = """{"user_id": "u9", "photo_inter_his": [102], "comment_inter_his": [[], []]}""" + "\n" +
                                """{"target_photo": 7, "photo_inter_his": [102], "comment_inter_his": [[], []]}""" + "\n" +
                                """{"user_id": [1], "target_photo": 101, "photo_inter_his": 102, "comment_inter_his": [[], []]}""" + "\n",
            ["comm_rank.val.json"] = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [102], "comment_inter_his": [[], []]}""" + "\n",
        });
        Assert.Equal(
        [
            "comm_rank.val.json:1: missing field \"pos_comments\"",
            "rec.test.json:1: missing field \"target_photo\"",
            "rec.test.json:2: missing field \"user_id\"",
            "rec.test.json:2: target_photo: video id '7' is not in all_photos.pkl",
            "rec.test.json:3: photo_inter_his: expected a list of video ids, found a number",
            "rec.test.json:3: user_id: expected an int or string, found a list",
        ], problems.Select(p => p.ToString()).OrderBy(s => s, StringComparer.Ordinal));
    }

    [Fact]
    public void Rejects_history_with_unknown_video_id()
    {
        var problems = Validate(new() { ["rec.test.json"] = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [102, 999], "comment_inter_his": [[], []]}""" });
        Single(problems, "rec.test.json", 1, "photo_inter_his: video id '999' is not in all_photos.pkl");
    }

    [Fact]
    public void Rejects_unknown_comment_id_in_comment_history()
    {
        var problems = Validate(new() { ["rec.test.json"] = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [], "comment_inter_his": [[102], [["x"]]]}""" });
        Single(problems, "rec.test.json", 1, "comment id 'x' is not in all_comments.pkl");
    }

    [Fact]
    public void Rejects_pad_id_used_as_an_item()
    {
        var problems = Validate(new() { ["rec.test.json"] = """{"user_id": "u9", "target_photo": "[PAD]", "photo_inter_his": [102], "comment_inter_his": [[], []]}""" });
        Single(problems, "rec.test.json", 1, "target_photo: the pad id '[PAD]' is used as a video");
    }

    [Fact]
    public void Rejects_comment_history_whose_parallel_lists_differ_in_length()
    {
        var problems = Validate(new() { ["rec.test.json"] = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [], "comment_inter_his": [[102, 103], [[203]]]}""" });
        Single(problems, "rec.test.json", 1, "2 videos but 1 comment lists");
    }

    [Fact]
    public void Rejects_positive_comment_not_under_the_target_video()
    {
        var problems = Validate(new() { ["comm_rank.val.json"] = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [102], "comment_inter_his": [[], []], "pos_comments": [201, 204]}""" });
        Single(problems, "comm_rank.val.json", 1, "comment '204' is not in the comment_list of target_photo '101'");
    }

    [Fact]
    public void Rejects_example_whose_histories_are_both_empty()
    {
        var problems = Validate(new() { ["rec.test.json"] = Ok + "\n" + """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [], "comment_inter_his": [[], []]}""" });
        Single(problems, "rec.test.json", 2, "both histories are empty");
    }

    /// <summary>MODEL.md §1.1: without times, a held-out target the user already met in training is a repeat
    /// interaction (real logs have them; the reference accepts them): a warning naming both lines, not a problem, and
    /// the dataset loads for training and evaluation.</summary>
    [Fact]
    public void A_rec_target_already_in_a_train_history_is_a_repeat_interaction_warning()
    {
        // u1's val target 103 appears in the video history of one of u1's training examples (line 3).
        using var dir = new TestDir();
        Fixture.WriteTo(dir, new() { ["rec.train.json"] = Fixture.Files["rec.train.json"] +
            """{"user_id": "u1", "target_photo": 101, "photo_inter_his": [102, 103], "comment_inter_his": [[], []]}""" + "\n" });
        var (problems, warnings) = DatasetValidator.Check(dir.Path);
        Assert.Empty(problems);
        var w = Single(warnings, "rec.val.json", 1, "repeat interaction: target video '103' of user 'u1'");
        Assert.Contains("rec.train.json:3", w.Message);
        var (data, readWarnings) = ReferenceLayout.ReadWithWarnings(dir.Path);
        Assert.Equal(warnings, readWarnings);
        Assert.Equal(Fixture.Files["rec.train.json"]!.Split('\n', StringSplitOptions.RemoveEmptyEntries).Length + 1, data[TaskKind.Rec, Split.Train].Count);
    }

    [Fact]
    public void Another_users_history_is_not_a_repeat_interaction()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir, new() { ["rec.train.json"] = Fixture.Files["rec.train.json"] +
            """{"user_id": "someone else", "target_photo": 101, "photo_inter_his": [102, 103], "comment_inter_his": [[], []]}""" + "\n" });
        var (problems, warnings) = DatasetValidator.Check(dir.Path);
        Assert.Empty(problems);
        Assert.Empty(warnings);
    }

    [Fact]
    public void A_commrank_test_positive_already_in_a_train_comment_history_is_a_repeat_interaction_warning()
    {
        using var dir = new TestDir();
        Fixture.WriteTo(dir, new() { ["comm_rank.train.json"] =
            """{"user_id": "u1", "target_photo": "102", "photo_inter_his": ["101"], "comment_inter_his": [[103], [[205]]], "pos_comments": [203]}""" });
        var (problems, warnings) = DatasetValidator.Check(dir.Path);
        Assert.Empty(problems);
        Single(warnings, "comm_rank.test.json", 1, "repeat interaction: positive comment '205' of user 'u1'");
        Assert.NotNull(ReferenceLayout.Read(dir.Path));
    }

    [Fact]
    public void Reports_bad_pickle()
    {
        var problems = Validate([], d => File.WriteAllBytes(d.File("all_comments.pkl"), [0x80, 0x02, 0x5d, 0x71]));
        Single(problems, "all_comments.pkl", null, "not a readable pickle");
    }

    [Fact]
    public void Reports_pickle_that_is_not_an_id_list()
    {
        var problems = Validate([], d => IdLists.Write(d.File("all_photos.pkl"), ["not pad", "101", "102", "103"]));
        Single(problems, "all_photos.pkl", null, "index 0 must be the pad entry '[PAD]'");
    }

    [Fact]
    public void Reports_every_missing_required_file()
    {
        var problems = Validate(new() { ["photo.json"] = null }, d => File.Delete(d.File("all_comments.pkl")));
        Assert.Equal(["all_comments.pkl: file is missing (required)", "photo.json: file is missing (required)"], problems.Select(p => p.ToString()));
    }

    [Fact]
    public void Reports_missing_directory()
    {
        var problems = DatasetValidator.Validate("/nonexistent/lsvcr-dataset");
        Assert.Contains("does not exist", Assert.Single(problems).Message);
    }

    [Fact]
    public void Reports_duplicate_ids_in_id_list()
    {
        var problems = Validate([], d => IdLists.Write(d.File("all_photos.pkl"), [Catalog.PadId, "101", "102", "103", "102"]));
        Single(problems, "all_photos.pkl", null, "duplicate id '102' at index 4 (first at index 2)");
    }

    [Fact]
    public void Reports_comment_list_referencing_unknown_comment()
    {
        var photos = Fixture.Files["photo.json"].Replace("\"comment_list\": [\"203\"]", "\"comment_list\": [\"203\", 299]");
        var problems = Validate(new() { ["photo.json"] = photos });
        Single(problems, "photo.json", 2, "comment_list of video '102': comment id '299' is not in all_comments.pkl");
    }

    [Fact]
    public void Reports_item_entries_missing_or_unknown_or_mistyped()
    {
        var problems = Validate(new()
        {
            ["comment.json"] = """
                {"201": {"content": "a"}, "202": {"content": 5}, "203": {"content": "c"},
                 "204": {"content": "d"}, "205": {"content": "e"}, "777": {"content": "?"}}
                """,
        });
        Assert.Equal(
        [
            "comment.json:1: comment '202': \"content\" must be a string",
            "comment.json:2: comment '777' is not in all_comments.pkl",
        ], problems.Select(p => p.ToString()));
    }

    [Fact]
    public void Collects_problems_from_all_files_instead_of_stopping_at_the_first()
    {
        var problems = Validate(new()
        {
            ["rec.test.json"] = "oops\n",
            ["rec.val.json"] = """{"user_id": "u9", "target_photo": 555, "photo_inter_his": [102], "comment_inter_his": [[], []]}""",
            ["comm_rank.val.json"] = """{"user_id": "u9", "target_photo": 101, "photo_inter_his": [102], "comment_inter_his": [[], []], "pos_comments": []}""",
        });
        Assert.Equal(["comm_rank.val.json:1", "rec.test.json:1", "rec.val.json:1"],
            problems.Select(p => $"{p.File}:{p.Line}").OrderBy(s => s, StringComparer.Ordinal));
    }
}
