#include "loadgen/svg_plot.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace ember {
namespace {

constexpr double kWidth = 560, kHeight = 340;
constexpr double kLeft = 70, kRight = 20, kTop = 36, kBottom = 52;

std::string num(double v) {
  char buf[32];
  if (v != 0 && (std::fabs(v) >= 1e6 || std::fabs(v) < 1e-3)) {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.6g", v);
  }
  return buf;
}

std::string coord(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

}  // namespace

std::string html_escape(const std::string& s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::vector<double> nice_ticks(double lo, double hi, int target) {
  if (!(hi > lo)) hi = lo + 1;
  const double raw = (hi - lo) / std::max(1, target);
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  double step = mag;
  for (double m : {1.0, 2.0, 5.0, 10.0}) {
    if (m * mag >= raw) {
      step = m * mag;
      break;
    }
  }
  std::vector<double> ticks;
  const double first = std::floor(lo / step) * step;
  for (int i = 0; i < 50; ++i) {
    const double t = first + step * i;  // not accumulated: no drift
    ticks.push_back(std::fabs(t) < step * 1e-9 ? 0.0 : t);
    if (t >= hi - step * 1e-9) break;  // the last tick covers hi
  }
  return ticks;
}

std::string svg_plot(const PlotSpec& spec) {
  double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
  for (const auto& s : spec.series) {
    for (const auto& [x, y] : s.points) {
      if (!std::isfinite(x) || !std::isfinite(y)) continue;
      x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
    }
  }
  if (!std::isfinite(x0)) x0 = 0, x1 = 1, y0 = 0, y1 = 1;
  y0 = std::min(y0, 0.0);  // values here are times and rates: anchor the axis at 0
  x0 = std::min(x0, 0.0);
  const auto xt = nice_ticks(x0, x1), yt = nice_ticks(y0, y1);
  x0 = xt.front(), x1 = std::max(xt.back(), x1), y0 = yt.front(), y1 = std::max(yt.back(), y1);
  if (!(x1 > x0)) x1 = x0 + 1;
  if (!(y1 > y0)) y1 = y0 + 1;
  const double pw = kWidth - kLeft - kRight, ph = kHeight - kTop - kBottom;
  auto px = [&](double x) { return kLeft + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return kTop + ph - (y - y0) / (y1 - y0) * ph; };

  std::string o;
  o += "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"plot\" id=\"" + html_escape(spec.id) + "\" width=\"" +
       coord(kWidth) + "\" height=\"" + coord(kHeight) + "\" viewBox=\"0 0 " + coord(kWidth) + " " + coord(kHeight) +
       "\" font-family=\"sans-serif\" font-size=\"11\">\n";
  o += "<title>" + html_escape(spec.title) + "</title>\n";
  o += "<text x=\"" + coord(kWidth / 2) + "\" y=\"18\" text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\">" +
       html_escape(spec.title) + "</text>\n";
  o += "<g class=\"axes\" stroke=\"#ccc\">\n";
  for (double t : xt) o += "<line x1=\"" + coord(px(t)) + "\" y1=\"" + coord(kTop) + "\" x2=\"" + coord(px(t)) + "\" y2=\"" + coord(kTop + ph) + "\"/>\n";
  for (double t : yt) o += "<line x1=\"" + coord(kLeft) + "\" y1=\"" + coord(py(t)) + "\" x2=\"" + coord(kLeft + pw) + "\" y2=\"" + coord(py(t)) + "\"/>\n";
  o += "</g>\n<g class=\"ticks\" fill=\"#333\">\n";
  for (double t : xt) o += "<text x=\"" + coord(px(t)) + "\" y=\"" + coord(kTop + ph + 15) + "\" text-anchor=\"middle\">" + num(t) + "</text>\n";
  for (double t : yt) o += "<text x=\"" + coord(kLeft - 6) + "\" y=\"" + coord(py(t) + 4) + "\" text-anchor=\"end\">" + num(t) + "</text>\n";
  o += "</g>\n";
  o += "<rect x=\"" + coord(kLeft) + "\" y=\"" + coord(kTop) + "\" width=\"" + coord(pw) + "\" height=\"" + coord(ph) + "\" fill=\"none\" stroke=\"#333\"/>\n";
  o += "<text x=\"" + coord(kLeft + pw / 2) + "\" y=\"" + coord(kHeight - 10) + "\" text-anchor=\"middle\">" + html_escape(spec.x_label) + "</text>\n";
  o += "<text transform=\"translate(16," + coord(kTop + ph / 2) + ") rotate(-90)\" text-anchor=\"middle\">" + html_escape(spec.y_label) + "</text>\n";

  double legend_y = kTop + 12;
  for (const auto& s : spec.series) {
    o += "<g class=\"series\" data-name=\"" + html_escape(s.name) + "\">\n";
    if (s.dots) {
      for (const auto& [x, y] : s.points) {
        if (!std::isfinite(x) || !std::isfinite(y)) continue;
        o += "<circle cx=\"" + coord(px(x)) + "\" cy=\"" + coord(py(y)) + "\" r=\"2.5\" fill=\"" + s.color + "\" fill-opacity=\"0.7\"/>\n";
      }
    } else if (!s.points.empty()) {
      o += "<polyline fill=\"none\" stroke=\"" + s.color + "\" stroke-width=\"1.8\" points=\"";
      for (const auto& [x, y] : s.points) {
        if (std::isfinite(x) && std::isfinite(y)) o += coord(px(x)) + "," + coord(py(y)) + " ";
      }
      o += "\"/>\n";
    }
    if (s.labels) {
      for (size_t i = 0; i < s.points.size() && i < s.point_labels.size(); ++i) {
        o += "<circle cx=\"" + coord(px(s.points[i].first)) + "\" cy=\"" + coord(py(s.points[i].second)) + "\" r=\"3.5\" fill=\"" + s.color + "\"/>\n";
        o += "<text x=\"" + coord(px(s.points[i].first) + 5) + "\" y=\"" + coord(py(s.points[i].second) - 5) + "\" font-size=\"10\">" +
             html_escape(s.point_labels[i]) + "</text>\n";
      }
    }
    o += "</g>\n";
    o += "<rect x=\"" + coord(kLeft + pw - 150) + "\" y=\"" + coord(legend_y - 8) + "\" width=\"10\" height=\"10\" fill=\"" + s.color + "\"/>";
    o += "<text x=\"" + coord(kLeft + pw - 135) + "\" y=\"" + coord(legend_y + 1) + "\">" + html_escape(s.name) + "</text>\n";
    legend_y += 15;
  }
  o += "</svg>\n";
  return o;
}

}  // namespace ember
