"""The browser page's static files (index.html, its ES modules and style.css), served by
``service/api/routes/web_page.py``. Plain HTML, CSS and JavaScript: nothing to build."""
