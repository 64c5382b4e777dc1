using LSVCR.Embeddings;

namespace LSVCR.Alignment.MiniLm;

/// <summary>The embedder's WordPiece tokenizer (same normalisation, same ids) with BERT framing [CLS] … [SEP].</summary>
internal sealed class WordPieceTokenizer : BackboneTokenizer
{
    private const int Cls = 101, Sep = 102, Pad = 0;
    private readonly WordPiece _wordPiece;

    public WordPieceTokenizer(WordPiece wordPiece) => _wordPiece = wordPiece;

    public override int[] Encode(string text)
    {
        var ids = new long[_wordPiece.MaxTokens];
        var mask = new long[_wordPiece.MaxTokens];
        int n = _wordPiece.Count(text, ids, mask);
        // Count frames the text as [CLS] … [SEP] (truncated to MaxTokens); drop the frame.
        return ids.AsSpan(1, Math.Max(n - 2, 0)).ToArray().Select(i => (int)i).ToArray();
    }

    public override int PadId => Pad;
    public override IReadOnlyList<int> Prefix { get; } = [Cls];
    public override IReadOnlyList<int> Suffix { get; } = [Sep];
}
