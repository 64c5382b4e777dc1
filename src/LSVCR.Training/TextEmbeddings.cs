using LSVCR.Data;

namespace LSVCR.Training;

/// <summary>Reads the embeddings artifacts (<c>photo_embs.npy</c>, <c>comment_embs.npy</c>) and checks them against the catalogue.</summary>
public static class TextEmbeddings
{
    public const string PhotoFile = ReferenceLayout.PhotoEmbeddingsFile, CommentFile = ReferenceLayout.CommentEmbeddingsFile;

    public static (FloatMatrix Photos, FloatMatrix Comments) Load(string dir, Catalog catalog)
    {
        if (!Directory.Exists(dir)) throw new LsvcrException($"{dir}: embeddings folder not found");
        var photos = Read(Path.Combine(dir, PhotoFile));
        var comments = Read(Path.Combine(dir, CommentFile));
        Check(photos, comments, catalog, dir);
        return (photos, comments);
    }

    /// <summary>Rows must equal the catalogue sizes (row = internal id, row 0 = pad) and both widths must agree.</summary>
    public static void Check(FloatMatrix photos, FloatMatrix comments, Catalog catalog, string where = "embeddings")
    {
        if (photos.Rows != catalog.PhotoCount)
            throw new LsvcrException($"{Path.Combine(where, PhotoFile)}: {photos.Rows} rows but the catalogue has {catalog.PhotoCount} videos (pad row included)");
        if (comments.Rows != catalog.CommentCount)
            throw new LsvcrException($"{Path.Combine(where, CommentFile)}: {comments.Rows} rows but the catalogue has {catalog.CommentCount} comments (pad row included)");
        if (photos.Cols != comments.Cols)
            throw new LsvcrException($"{where}: {PhotoFile} is {photos.Cols} wide but {CommentFile} is {comments.Cols} wide");
    }

    private static FloatMatrix Read(string path)
    {
        if (!File.Exists(path)) throw new LsvcrException($"{path}: not found");
        try
        {
            return Npy.Read(path);
        }
        catch (NpyFormatException e)
        {
            throw new LsvcrException(e.Message);
        }
    }
}
