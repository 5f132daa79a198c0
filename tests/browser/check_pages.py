"""Open built docs pages in headless Chromium and report what a reader would see broken (run in its sandbox).

Usage: ``python tests/browser/check_pages.py BUILD_DIR PAGE.html [PAGE.html ...]``. Prints one json object per
page: the images that did not load, the number of empty code blocks and the code boxes wider than their box
(horizontal scrolling). Exits 1 if any page has one of these.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

#: A desktop window, as a reader opens the docs.
WINDOW = (1400, 900)

FIND_PROBLEMS = """
const boxes = Array.from(document.querySelectorAll("div.highlight pre"));
return {
  images: document.images.length,
  broken_images: Array.from(document.images).filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src),
  code_boxes: boxes.length,
  empty_code_boxes: boxes.filter(p => p.textContent.trim() === "").length,
  overflowing_code_boxes: boxes.filter(p => p.scrollWidth > p.clientWidth + 1)
    .map(p => p.textContent.split("\\n").reduce((a, b) => (b.length > a.length ? b : a), "")),
};
"""


def browser() -> webdriver.Chrome:
    options = Options()
    options.binary_location = "/usr/bin/chromium"
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={WINDOW[0]},{WINDOW[1]}"):
        options.add_argument(argument)
    return webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)


def check(driver: webdriver.Chrome, page: Path) -> dict[str, object]:
    driver.get(page.as_uri())
    driver.execute_script("return document.fonts.ready")
    problems = driver.execute_script(FIND_PROBLEMS)
    return {"page": str(page), **problems}


def main(build: Path, pages: list[str]) -> int:
    driver = browser()
    failed = False
    try:
        for name in pages:
            result = check(driver, build / name)
            print(json.dumps(result), flush=True)
            bad = result["broken_images"] or result["empty_code_boxes"] or result["overflowing_code_boxes"]
            failed = failed or bool(bad)
    finally:
        driver.quit()
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]), sys.argv[2:]))
