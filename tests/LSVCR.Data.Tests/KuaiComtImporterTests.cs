namespace LSVCR.Data.Tests;

public class KuaiComtImporterTests
{
    private static readonly Dictionary<string, string> Csvs = new()
    {
        ["video_features.csv"] = """
            video_id,caption,category,duration
            1,"Cat, jumping 😺",pets,10
            2,Dog tricks,pets,12
            3,Pasta night,food,30
            4,Unused video,misc,5
            5,Guitar,music,60
            """,
        ["comment_features.csv"] = """
            comment_id,comment_content,video_id,comment_like_cnt,comment_reply_out,show_comment_cnt_td
            10,c ten,1,5,0,3
            11,c eleven,1,9,1,3
            12,c twelve,1,5,0,3
            20,c twenty,2,1,0,1
            30,c thirty,3,2,0,1
            31,c thirty-one,3,7,0,1
            40,c forty,4,1,0,1
            99,orphan,77,1,0,1
            50,c fifty,5,0,0,1
            """,
        // u100 likes 1@1s, 2@5.5s, 3@9s, 5@12s; video 4 watched, not liked; a repeated like and an unknown video.
        ["user_video_inter.csv"] = """
            user_id,video_id,time_ms,is_like,watch_ms
            100,2,5500,1,1
            100,1,1000,1,1
            100,4,2000,0,1
            100,3,9000,1,1
            100,5,12000,1,1
            100,1,20000,1,1
            100,88,3000,1,1
            200,1,3000,1,1
            """,
        // Times in seconds: comment 31 at 6 s comes after the like of video 2 at 5500 ms.
        ["user_comment_inter.csv"] = """
            user_id,comment_id,time_stamp,photo_id,is_like,is_reply
            100,11,2,1,1,0
            100,31,6,3,0,1
            100,12,10,1,1,0
            100,30,7,3,0,0
            100,20,8,1,1,0
            100,404,8,1,1,0
            200,10,4,1,1,0
            """,
        ["user_features.csv"] = "user_id,age\n100,3\n200,4\n",
    };

    private static (LsvcrDataset, ImportReport) Import(KuaiComtOptions? options = null, Dictionary<string, string>? replace = null, TestDir? keep = null)
    {
        var dir = keep ?? new TestDir();
        try
        {
            foreach (var (name, text) in Csvs) dir.Write(name, text + "\n");
            foreach (var (name, text) in replace ?? []) dir.Write(name, text);
            return KuaiComtImporter.Import(dir.Path, options ?? new KuaiComtOptions { MinInteractions = 3 });
        }
        finally { if (keep is null) dir.Dispose(); }
    }

    [Fact]
    public void Builds_catalogue_from_interacted_videos_with_comments_in_like_count_order()
    {
        var (data, report) = Import();
        var cat = data.Catalog;
        Assert.Equal([Catalog.PadId, "1", "2", "3", "5"], cat.PhotoIds);
        Assert.Equal("Cat, jumping 😺", cat.PhotoTitles[1]);
        // Video 1: 11 (9 likes), then 10 and 12 tied at 5 (comment id order).
        Assert.Equal(["11", "10", "12"], cat.CommentsOf(1).ToArray().Select(c => cat.CommentIds[c]));
        Assert.Equal(["31", "30"], cat.CommentsOf(3).ToArray().Select(c => cat.CommentIds[c]));
        Assert.Equal("c thirty-one", cat.CommentTexts[cat.CommentIndex["31"]]);
        Assert.False(cat.CommentIndex.ContainsKey("40"));
        Assert.Equal((1, 4, 7), (report.Users, report.Videos, report.Comments));
        Assert.Equal((4, 3), (report.LikedVideos, report.CommentInteractions));
    }

    [Fact]
    public void Rec_examples_use_only_earlier_interactions_with_seconds_converted_to_ms()
    {
        var (data, _) = Import();
        var cat = data.Catalog;
        string P(int p) => cat.PhotoIds[p];
        string[] C(ReadOnlySpan<int> cs) => cs.ToArray().Select(c => cat.CommentIds[c]).ToArray();

        var train = data[TaskKind.Rec, Split.Train];
        Assert.Equal(1, train.Count); // the first like (video 1) has no earlier interaction and is no example
        Assert.Equal("2", P(train.TargetPhoto[0]));
        Assert.Equal(["1"], train.PhotoHistoryOf(0).ToArray().Select(P));
        // At 5.5 s only comment 11 (2 s) exists; comment 31 (6 s) must not appear, which it would if s were read as ms.
        Assert.Equal(["1"], train.CommentHistoryPhoto.Select(P));
        Assert.Equal(["11"], C(train.CommentsOfEntry(0)));

        var val = data[TaskKind.Rec, Split.Val];
        Assert.Equal("3", P(val.TargetPhoto[0]));
        Assert.Equal(["1", "2"], val.PhotoHistoryOf(0).ToArray().Select(P));
        Assert.Equal(["1", "3"], val.CommentHistoryPhoto.Select(P));
        Assert.Equal(["11"], C(val.CommentsOfEntry(0))); // comment 12 (10 s) is later than the 9 s target

        var test = data[TaskKind.Rec, Split.Test];
        Assert.Equal("5", P(test.TargetPhoto[0]));
        Assert.Equal(["1", "2", "3"], test.PhotoHistoryOf(0).ToArray().Select(P));
        Assert.Equal(["11", "12"], C(test.CommentsOfEntry(0)));
        Assert.Equal(["31"], C(test.CommentsOfEntry(1)));
    }

    [Fact]
    public void CommRank_targets_are_videos_with_comment_interactions_split_last_to_test()
    {
        var (data, _) = Import();
        var cat = data.Catalog;
        Assert.Equal(0, data[TaskKind.CommRank, Split.Train].Count);
        var val = data[TaskKind.CommRank, Split.Val];
        Assert.Equal("1", cat.PhotoIds[val.TargetPhoto[0]]);
        Assert.Equal(["11", "12"], val.PositivesOf(0).ToArray().Select(c => cat.CommentIds[c]));
        Assert.Equal(["1"], val.PhotoHistoryOf(0).ToArray().Select(p => cat.PhotoIds[p])); // liked at 1 s, commented at 2 s
        Assert.Equal(0, val.CommentEntriesOf(0).End - val.CommentEntriesOf(0).Start);
        var test = data[TaskKind.CommRank, Split.Test];
        Assert.Equal("3", cat.PhotoIds[test.TargetPhoto[0]]);
        Assert.Equal(["31"], test.PositivesOf(0).ToArray().Select(c => cat.CommentIds[c]));
        Assert.Equal(["1", "2"], test.PhotoHistoryOf(0).ToArray().Select(p => cat.PhotoIds[p]));
        Assert.Equal(["11"], test.CommentsOfEntry(test.CommentEntriesOf(0).Start).ToArray().Select(c => cat.CommentIds[c]));
    }

    [Fact]
    public void Imported_dataset_exports_to_a_valid_leak_free_layout()
    {
        var (data, _) = Import();
        using var dir = new TestDir();
        ReferenceLayout.Write(data, dir.Path);
        Assert.Empty(DatasetValidator.Validate(dir.Path));
    }

    [Fact]
    public void Reports_dropped_rows_and_users_per_reason()
    {
        var (_, report) = Import();
        Assert.Equal(1, report.Dropped["users with fewer than 3 interactions"]);
        Assert.Equal(2, report.Dropped["interactions of dropped users"]);
        Assert.Equal(1, report.Dropped["user_video_inter: repeated like of the same video"]);
        Assert.Equal(1, report.Dropped["user_video_inter: video missing from video_features"]);
        Assert.Equal(1, report.Dropped["user_video_inter: not liked (not an interaction)"]);
        Assert.Equal(1, report.Dropped["user_comment_inter: neither liked nor replied (not an interaction)"]);
        Assert.Equal(1, report.Dropped["user_comment_inter: photo_id differs from the comment's video"]);
        Assert.Equal(1, report.Dropped["user_comment_inter: comment missing from comment_features"]);
        Assert.Equal(1, report.Dropped["comment_features: comment of a video missing from video_features"]);
        Assert.Equal(1, report.Dropped["Rec targets without any earlier interaction"]);
        Assert.Equal(1, report.Dropped["videos without kept interactions (left out of the catalogue)"]);
    }

    [Fact]
    public void Truncates_histories_to_the_most_recent_entries()
    {
        var (data, _) = Import(new KuaiComtOptions { MinInteractions = 3, MaxHistory = 2 });
        var test = data[TaskKind.Rec, Split.Test];
        Assert.Equal(["2", "3"], test.PhotoHistoryOf(0).ToArray().Select(p => data.Catalog.PhotoIds[p]));
    }

    [Fact]
    public void Min_interactions_keeps_or_drops_users()
    {
        var (data, report) = Import(new KuaiComtOptions { MinInteractions = 1 });
        Assert.Equal(2, report.Users);
        Assert.Contains("200", data[TaskKind.CommRank, Split.Test].UserIds); // 200's comment at 4 s follows its like at 3 s
    }

    [Fact]
    public void Missing_column_names_file_and_column()
    {
        var e = Assert.Throws<LsvcrException>(() => Import(replace: new() { ["user_comment_inter.csv"] = "user_id,comment_id,time_stamp,photo_id,is_like\n1,2,3,4,1\n" }));
        Assert.Contains("user_comment_inter.csv: required column 'is_reply' is missing", e.Message);
    }

    [Fact]
    public void Bad_value_names_file_line_and_column()
    {
        var e = Assert.Throws<LsvcrException>(() => Import(replace: new() { ["user_video_inter.csv"] = "user_id,video_id,time_ms,is_like\n100,1,1000,1\n100,2,soon,1\n" }));
        Assert.Equal("user_video_inter.csv:3: column 'time_ms' value 'soon' is not a timestamp", e.Message);
    }

    [Fact]
    public void Ragged_row_is_rejected_with_its_line()
    {
        var e = Assert.Throws<LsvcrException>(() => Import(replace: new() { ["video_features.csv"] = "video_id,caption\n1,a\n2,b,extra,fields\n" }));
        Assert.StartsWith("video_features.csv:3:", e.Message);
    }

    [Fact]
    public void Missing_file_is_named()
    {
        using var dir = new TestDir();
        var e = Assert.Throws<LsvcrException>(() => KuaiComtImporter.Import(dir.Path));
        Assert.Contains("video_features.csv", e.Message);
    }
}
