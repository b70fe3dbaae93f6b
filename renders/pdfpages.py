"""Opening PDFs and drawing their pages (pypdfium2), and keeping page images in the platform's storage.

PDFium is not thread-safe: every call into it in a process holds `_PDFIUM` (a server's request threads
queue on it, a page at a time). Page images are kept beside the render's PDF in the same storage
(`django.core.files.storage`, so an object-storage backend keeps them too), named by render and page.
"""

import io
import threading
from dataclasses import dataclass

import pypdfium2 as pdfium
from django.core.files.base import ContentFile

from engagement_platform.errors import ValidationFailed

PAGE_IMAGE_WIDTH = 1200  # pixels: sharp on a laptop, light enough on a phone
PAGE_IMAGE_FORMAT, PAGE_IMAGE_CONTENT_TYPE, PAGE_IMAGE_EXTENSION = "WEBP", "image/webp", "webp"
PAGE_IMAGE_QUALITY = 80
_PDFIUM = threading.Lock()
NOT_READABLE = "The file is not a readable PDF."
PASSWORD_PROTECTED = "The PDF is password-protected; upload it without a password."
NO_PAGES = "The PDF has no pages."


@dataclass(frozen=True)
class PdfOutline:
    """What the platform keeps of a PDF: its page count and each page's size in points (width, height)."""

    page_count: int
    page_sizes: list[list[float]]


def _open(data: bytes) -> pdfium.PdfDocument:
    try:
        return pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        message = PASSWORD_PROTECTED if "password" in str(exc).lower() else NOT_READABLE
        raise ValidationFailed(field_errors={"file": [message]}) from None


def pdf_outline(data: bytes) -> PdfOutline:
    """The page count and page sizes of a PDF; 400 `invalid_request` (fieldErrors.file) when it does not open
    (corrupt, password-protected) or has no pages."""
    with _PDFIUM:
        document = _open(data)
        try:
            count = len(document)
            if count < 1:
                raise ValidationFailed(field_errors={"file": [NO_PAGES]})
            sizes = [[round(width, 2), round(height, 2)] for width, height in
                     (document.get_page_size(index) for index in range(count))]
        finally:
            document.close()
    return PdfOutline(page_count=count, page_sizes=sizes)


def page_image_bytes(data: bytes, page_number: int) -> bytes:
    """Page `page_number` (1-based) of a PDF drawn PAGE_IMAGE_WIDTH pixels wide, encoded as PAGE_IMAGE_FORMAT."""
    with _PDFIUM:
        document = pdfium.PdfDocument(data)
        try:
            page = document[page_number - 1]
            width, _ = page.get_size()
            image = page.render(scale=PAGE_IMAGE_WIDTH / width).to_pil()
            page.close()
        finally:
            document.close()
    out = io.BytesIO()
    image.save(out, PAGE_IMAGE_FORMAT, quality=PAGE_IMAGE_QUALITY)
    return out.getvalue()


def page_image_name(render, page_number: int) -> str:
    """Where a render's page image is kept, beside its PDF (renders/<project>/<render>.pdf)."""
    return f"renders/{render.project_id}/{render.id}-pages/{page_number}.{PAGE_IMAGE_EXTENSION}"


def page_image_names(render) -> list[str]:
    return [page_image_name(render, number) for number in range(1, (render.page_count or 0) + 1)]


def page_image_open(render, page_number: int):
    """The kept image of a render's page, drawn and kept on the first request. Two first requests at once may
    both draw it; the second keeps nothing of its own (a storage that renamed its copy gets it deleted)."""
    storage = render.file.storage
    name = page_image_name(render, page_number)
    if not storage.exists(name):
        with render.file.open("rb") as pdf:
            image = page_image_bytes(pdf.read(), page_number)
        saved = storage.save(name, ContentFile(image))
        if saved != name:
            storage.delete(saved)
    return storage.open(name, "rb")
