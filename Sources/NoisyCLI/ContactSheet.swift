import ImageCodec
import Pixels

/// A grid of images with a caption under each: what users look at before they train.
struct ContactSheet {
    let columns: Int
    /// Tiles are scaled up by whole pixels (nearest) to at least this side, so 28x28 stays legible.
    let minimumTile: Int

    init(columns: Int, minimumTile: Int = 96) {
        self.columns = max(1, columns)
        self.minimumTile = minimumTile
    }

    func render(_ tiles: [(image: Image, caption: String)]) -> Image {
        let side = tiles.map { max($0.image.width, $0.image.height) }.max() ?? 1
        let zoom = max(1, (minimumTile + side - 1) / side)
        let tile = side * zoom
        let captionHeight = BitmapFont.height + 4
        let gap = 4
        let cols = min(columns, max(1, tiles.count))
        let rows = (tiles.count + cols - 1) / cols
        let width = cols * (tile + gap) + gap
        let height = rows * (tile + captionHeight + gap) + gap
        var sheet = Image(width: width, height: height, channels: 3, fill: 255)
        for (k, t) in tiles.enumerated() {
            let ox = gap + (k % cols) * (tile + gap)
            let oy = gap + (k / cols) * (tile + captionHeight + gap)
            let img = t.image
            for y in 0..<(img.height * zoom) {
                for x in 0..<(img.width * zoom) {
                    let sx = x / zoom, sy = y / zoom
                    for c in 0..<3 {
                        sheet[ox + x, oy + y, c] = img[sx, sy, img.channels == 1 ? 0 : c]
                    }
                }
            }
            drawText(t.caption, into: &sheet, x: ox, y: oy + tile + 2, maxWidth: tile)
        }
        return sheet
    }

    /// Draws ASCII text in black; other characters show as '?'; cut to fit.
    func drawText(_ text: String, into image: inout Image, x: Int, y: Int, maxWidth: Int) {
        var cx = x
        for scalar in text.unicodeScalars {
            guard cx + BitmapFont.width <= x + maxWidth else { break }
            let code = Int(scalar.value)
            let glyph = BitmapFont.glyphs[(32...126).contains(code) ? code - 32 : Int(("?" as Unicode.Scalar).value) - 32]
            for (row, bits) in glyph.enumerated() where y + row < image.height {
                for col in 0..<BitmapFont.width where bits & (1 << (5 - col)) != 0 && cx + col < image.width {
                    for c in 0..<3 { image[cx + col, y + row, c] = 0 }
                }
            }
            cx += BitmapFont.width
        }
    }
}
