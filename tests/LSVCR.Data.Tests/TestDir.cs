namespace LSVCR.Data.Tests;

/// <summary>A scratch directory deleted after the test.</summary>
public sealed class TestDir : IDisposable
{
    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "lsvcr-data-tests", Guid.NewGuid().ToString("N"));

    public TestDir() => Directory.CreateDirectory(Path);

    public string File(string name) => System.IO.Path.Combine(Path, name);

    public void Write(string name, string text) => System.IO.File.WriteAllText(File(name), text);

    public void Dispose()
    {
        try { Directory.Delete(Path, recursive: true); } catch (IOException) { }
    }
}

/// <summary>
/// A tiny hand-made reference-layout dataset. Its ids deliberately mix JSON ints and strings ("102" and 102 are the
/// same video), and texts hold emoji and accents.
/// </summary>
public static class Fixture
{
    public static readonly Dictionary<string, string> Files = new()
    {
        ["photo.json"] = """
            {"101": {"title": "Cats 😺 jump", "comment_list": [201, 202]},
             "102": {"title": "Dogs", "comment_list": ["203"]},
             "103": {"title": "Ünïcode – title", "comment_list": [204, 205], "extra": 1}}
            """,
        ["comment.json"] = """
            {"201": {"content": "so cute"}, "202": {"content": "lol 😂"}, "203": {"content": "good boy"},
             "204": {"content": "où?"}, "205": {"content": "nice"}}
            """,
        ["rec.train.json"] =
            """{"user_id": "u1", "target_photo": 102, "photo_inter_his": [101], "comment_inter_his": [[101], [[201, 202]]]}""" + "\n" +
            """{"user_id": 7, "target_photo": "101", "photo_inter_his": [], "comment_inter_his": [["103"], [["204"]]]}""" + "\n",
        ["rec.val.json"] =
            """{"user_id": "u1", "target_photo": 103, "photo_inter_his": [101, 102], "comment_inter_his": [[101], [[201, 202]]]}""" + "\n",
        ["comm_rank.train.json"] =
            """{"user_id": "u1", "target_photo": "102", "photo_inter_his": ["101"], "comment_inter_his": [[101], [[201]]], "pos_comments": [203]}""" + "\n",
        ["comm_rank.test.json"] =
            """{"user_id": "u1", "target_photo": 103, "photo_inter_his": [101, 102], "comment_inter_his": [[101, 102], [[201], [203]]], "pos_comments": [205, 204]}""" + "\n",
    };

    public static readonly string[] PhotoIds = [Catalog.PadId, "101", "102", "103"];
    public static readonly string[] CommentIds = [Catalog.PadId, "201", "202", "203", "204", "205"];

    /// <summary>Writes the fixture; <paramref name="replace"/> overrides or (with null) removes files.</summary>
    public static void WriteTo(TestDir dir, Dictionary<string, string?>? replace = null)
    {
        IdLists.Write(dir.File("all_photos.pkl"), PhotoIds);
        IdLists.Write(dir.File("all_comments.pkl"), CommentIds);
        foreach (var (name, text) in Files) dir.Write(name, text);
        foreach (var (name, text) in replace ?? [])
            if (text is null) System.IO.File.Delete(dir.File(name));
            else dir.Write(name, text);
    }
}
