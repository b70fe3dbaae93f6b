"""Small, valid PDFs with a title and a few lines of text per page, for demo renders and tests."""

A4_POINTS = (595, 842)
LETTER_POINTS = (612, 792)


def _escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _page_stream(title: str, lines: list[str], height: int) -> bytes:
    commands = ["BT", "/F1 24 Tf", f"72 {height - 32} Td", f"({_escape(title)}) Tj", "/F1 12 Tf"]
    for line in lines:
        commands += ["0 -22 Td", f"({_escape(line)}) Tj"]
    commands.append("ET")
    return "\n".join(commands).encode("latin-1", "replace")


def _assemble(objects: list[bytes], trailer_extra: bytes = b"") -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref_at = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for offset in offsets:
        out += f"{offset:010d} 00000 n \n".encode()
    out += (f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R ".encode() + trailer_extra
            + f">>\nstartxref\n{xref_at}\n%%EOF\n".encode())
    return bytes(out)


def pages_pdf(pages: list[tuple[str, list[str]]], *, size: tuple[int, int] = LETTER_POINTS,
              trailer_extra: bytes = b"", extra_objects: tuple[bytes, ...] = ()) -> bytes:
    """A PDF of one page per (title, lines); objects: catalog, pages, font, then a page and its content each."""
    width, height = size
    page_numbers = [4 + 2 * index for index in range(len(pages))]
    kids = " ".join(f"{number} 0 R" for number in page_numbers)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode(),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    for number, (title, lines) in zip(page_numbers, pages, strict=True):
        stream = _page_stream(title, lines, height)
        objects.append(f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] /Contents {number + 1} 0 R "
                       f"/Resources << /Font << /F1 3 0 R >> >> >>".encode())
        objects.append(b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream")
    return _assemble(objects + list(extra_objects), trailer_extra)


def simple_pdf(title: str, lines: list[str]) -> bytes:
    """A one-page Letter PDF."""
    return pages_pdf([(title, lines)])


def encrypted_pdf() -> bytes:
    """A one-page PDF behind a user password (the Standard security handler, revision 2): it does not open."""
    encrypt = (b"<< /Filter /Standard /V 1 /R 2 /P -4 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> >>")
    base = pages_pdf([("Secret", ["Locked."])])
    encrypt_number = base.count(b" 0 obj\n") + 1
    return pages_pdf([("Secret", ["Locked."])], extra_objects=(encrypt,),
                     trailer_extra=f"/Encrypt {encrypt_number} 0 R /ID [<{'ab' * 16}> <{'ab' * 16}>] ".encode())


def no_pages_pdf() -> bytes:
    """A well-formed PDF whose page tree is empty."""
    return _assemble([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])
