// Publishes set <set> into a store (args: local <root> <set> | blob <connection string> <container> <set>):
// one small file completely, then a large file whose source stalls after StallAfter bytes. It prints "STALLED" once
// the first block of the large file is out, and waits there for the test to kill it (SIGKILL).
using LSVCR.Artifacts;

IArtifactStore store = args[0] == "local"
    ? new LocalArtifactStore(args[1])
    : new BlobArtifactStore(args[1], args[2], new ArtifactCache(Path.Combine(Path.GetTempPath(), $"lsvcr-killable-{Environment.ProcessId}")));
var set = args[^1];
var writer = store.CreateSet(set, "test");
await writer.AddFileAsync("small.txt", new MemoryStream("complete file\n"u8.ToArray()));
await writer.AddFileAsync("large.bin", new StallingStream(BlobArtifactStore.BlockSize + (1 << 20)));
Console.WriteLine("not reached: the large file's source never ends");
return 1;

/// <summary>Serves bytes until <c>stallAfter</c>, says so, then never returns.</summary>
sealed class StallingStream(long stallAfter) : Stream
{
    private long served;
    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken ct = default)
    {
        if (served >= stallAfter)
        {
            Console.WriteLine("STALLED");
            Console.Out.Flush();
            await Task.Delay(Timeout.Infinite, ct);
        }
        int n = (int)Math.Min(buffer.Length, stallAfter - served);
        buffer.Span[..n].Fill((byte)'x');
        served += n;
        return n;
    }
    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => served; set => throw new NotSupportedException(); }
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
