namespace LSVCR.Data.Tests;

public class NpyTests
{
    [Fact]
    public void Writes_the_numpy_magic_bytes_and_reads_them_back()
    {
        using var dir = new TestDir();
        var path = dir.File("m.npy");
        Npy.Write(path, new FloatMatrix([1f, 2f, 3f, 4f, 5f, 6f], 2, 3));
        var bytes = File.ReadAllBytes(path);
        // NumPy requires exactly \x93NUMPY; a C# "\x93"u8 literal would encode U+0093 as two bytes (C2 93).
        Assert.Equal(new byte[] { 0x93, (byte)'N', (byte)'U', (byte)'M', (byte)'P', (byte)'Y', 1, 0 }, bytes[..8]);
        Assert.Equal(128 + 24, bytes.Length); // preamble + dict padded to a multiple of 64, then 6 floats
        var back = Npy.Read(path);
        Assert.Equal((2, 3), (back.Rows, back.Cols));
        Assert.Equal([4f, 5f, 6f], back.Row(1).ToArray());
        var header = Fixture.Python($"""
            import ast
            b = open(r'{path}', 'rb').read()
            n = int.from_bytes(b[8:10], 'little')
            h = ast.literal_eval(b[10:10 + n].decode('latin1'))
            print(b[:6] == b'\x93NUMPY', (10 + n) % 64, h['descr'], h['shape'])
            """);
        if (header is not null) Assert.Equal("True 0 <f4 (2, 3)", header); // the header as numpy's own parser reads it
    }
}
